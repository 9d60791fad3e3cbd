"""Counts in the diagnosis's sentences agree with their nouns."""

from __future__ import annotations

from dataclasses import replace

from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.wording import attribution_gaps
from tcphealth.model import Attribution
from tests.builders import snapshot


def gaps(attribution: Attribution) -> tuple[str, ...]:
    return attribution_gaps(SnapshotIndex(replace(snapshot([]), attribution=attribution)))


def test_one_unseen_socket_and_one_forbidden_process_are_singular() -> None:
    assert gaps(Attribution(attempted=True, processes_forbidden=1, sockets_unseen=1)) == (
        "the descriptors of 1 process were not readable (run as root to see every owner)",
        "1 socket with a descriptor had no owner we could see",
    )
    assert gaps(Attribution(attempted=True, processes_forbidden=2, sockets_unseen=3)) == (
        "the descriptors of 2 processes were not readable (run as root to see every owner)",
        "3 sockets with a descriptor had no owner we could see",
    )
