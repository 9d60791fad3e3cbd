"""Counts in the diagnosis's sentences agree with their nouns."""

from __future__ import annotations

import ipaddress
from collections import Counter

from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.wording import attribution_gaps, most_common_text
from tcphealth.model import Attribution, Endpoint, OwnerSource, Socket, TcpState
from tests.builders import many, snapshot, sock

UNSEEN = OwnerSource.UNSEEN


def unseen(state: str, count: int) -> list[Socket]:
    """``count`` sockets in ``state`` with a descriptor that nobody we could read holds."""
    return many(
        count,
        lambda i: sock(
            state, f"10.0.0.1:{40000 + i}", "10.0.0.2:5432", inode=900 + i, owner=UNSEEN
        ),
    )


def gaps(attribution: Attribution, *sockets: list[Socket]) -> tuple[str, ...]:
    snap = snapshot(*sockets, attribution=attribution)
    return attribution_gaps(SnapshotIndex.build(snap), TcpState.CLOSE_WAIT)


def test_one_unseen_socket_and_one_forbidden_process_are_singular() -> None:
    assert gaps(
        Attribution(attempted=True, processes_forbidden=1, sockets_unseen=1),
        unseen("CLOSE-WAIT", 1),
    ) == (
        "the descriptors of 1 process were not readable (run as root to see every owner)",
        "1 CLOSE_WAIT socket with a descriptor had no owner we could see",
    )
    assert gaps(
        Attribution(attempted=True, processes_forbidden=2, sockets_unseen=3),
        unseen("CLOSE-WAIT", 3),
    ) == (
        "the descriptors of 2 processes were not readable (run as root to see every owner)",
        "3 CLOSE_WAIT sockets with a descriptor had no owner we could see",
    )


def test_unseen_sockets_of_other_states_are_not_a_gap_for_this_one() -> None:
    # An ownerless listener (this VM has one) or TIME_WAIT says nothing about who holds
    # CLOSE_WAIT; only the unseen CLOSE_WAIT socket is named.
    attribution = Attribution(attempted=True, sockets_unseen=4)
    assert gaps(attribution, unseen("LISTEN", 1), unseen("ESTABLISHED", 2)) == ()
    assert gaps(attribution, unseen("LISTEN", 1), unseen("CLOSE-WAIT", 1)) == (
        "1 CLOSE_WAIT socket with a descriptor had no owner we could see",
    )


def test_pasted_host_names_are_counted_and_shown_as_names_not_as_their_stand_in() -> None:
    # netstat without -n: each name stands for its own host; its address is only 0.0.0.0.
    # Every client port differs, so the destinations are counted per host -- per name.
    counts: Counter[Endpoint] = Counter()
    for i, name in enumerate(["crawl.yahoo.", "crawl.yahoo.", "proxy-72", "my_server_name"]):
        counts[Endpoint(ipaddress.IPv4Address("0.0.0.0"), 50000 + i, name)] += 1
    assert most_common_text(counts) == "crawl.yahoo. (2), my_server_name (1), proxy-72 (1)"
