"""destinations_of_table keeps only what a finding names, named as the objects' counts name it."""

from __future__ import annotations

import ipaddress
from collections import Counter

import numpy as np

from tcphealth.columnar import DumpColumns
from tcphealth.diagnose.index import destination
from tcphealth.diagnose.shared import destinations_of_table
from tcphealth.diagnose.wording import most_common_text, share_text, top_destinations
from tcphealth.model import Endpoint
from tcphealth.sources.columns import _empty, joined


def _columns(ends: list[tuple[str, int]]) -> DumpColumns:
    parts = _empty(len(ends))
    for row, (text, port) in enumerate(ends):
        address = ipaddress.ip_address(text)
        if address.version == 4:
            parts["family"][row] = 2
            parts["dst_high"][row] = int(address) << 32
        else:
            parts["family"][row] = 10
            parts["dst_high"][row] = int(address) >> 64
            parts["dst_low"][row] = int(address) & (2**64 - 1)
        parts["dport"][row] = port
    return joined([parts])


def _named(ends: list[tuple[str, int]]) -> tuple[object, ...]:
    """What a finding writes from the counts of ``ends``: from the table and from objects."""
    rows = np.arange(len(ends), dtype=np.intp)
    table = destinations_of_table(_columns(ends), rows)
    objects = Counter(destination(Endpoint(ipaddress.ip_address(a), p)) for a, p in ends)
    said = [
        (top_destinations(counts), most_common_text(counts), share_text(counts, len(ends)))
        for counts in (table, objects)
    ]
    assert said[0] == said[1]
    assert len(table) <= 3
    return tuple(said[0])


def test_ties_at_the_third_count_are_ranked_by_text_not_by_number() -> None:
    # Each client port connected to two listeners: every destination twice, a server's tie.
    # As text 127.0.0.20 sorts before 127.0.0.2, and port 10000 before 5000 and 9999.
    ends = [
        (client, port)
        for client in ("127.0.0.2", "127.0.0.20", "127.0.0.3")
        for port in (9999, 10000, 5000, 41000)
        for _ in range(2)
    ] + [("127.0.0.9", 40000)]
    _, text, share = _named(ends)
    assert text == "127.0.0.20:10000 (2), 127.0.0.20:41000 (2), 127.0.0.20:5000 (2)"
    assert share == f"mostly {text}"


def test_mapped_and_ipv6_ends_tie_with_ipv4_as_objects_count_them() -> None:
    ends = [
        ("::ffff:10.0.0.5", 443),
        ("10.0.0.5", 443),
        ("2001:db8::1", 443),
        ("2001:db8::1", 443),
        ("2001:db8::2", 80),
        ("2001:db8::2", 80),
        ("10.0.0.4", 80),
        ("10.0.0.4", 80),
        ("10.0.0.6", 1),
    ]
    top, text, _ = _named(ends)
    assert text == "10.0.0.4:80 (2), 10.0.0.5:443 (2), [2001:db8::1]:443 (2)"
    assert isinstance(top, tuple) and len(top) == 3


def test_a_larger_count_leads_whatever_its_text() -> None:
    ends = [("127.0.0.9", 9)] * 3 + [(f"127.0.0.{n}", 1000 + n) for n in range(2, 6)] * 2
    _, text, _ = _named(ends)
    assert text == "127.0.0.9:9 (3), 127.0.0.2:1002 (2), 127.0.0.3:1003 (2)"


def test_a_thousand_tied_clients_name_the_first_by_text_across_families() -> None:
    # A server's CLOSE_WAIT: one client port counted twice, a thousand once (the third
    # count), v4, v4-mapped and IPv6 clients among them; only three become objects.
    ends = [("127.0.0.16", 51620)] * 2 + [
        (client, port)
        for client in ("127.0.0.10", "127.0.0.2", "::ffff:127.0.0.3", "2001:db8::7")
        for port in range(35000, 35250)
    ]
    _, text, share = _named(ends)
    assert text == "127.0.0.16:51620 (2), 127.0.0.10:35000 (1), 127.0.0.10:35001 (1)"
    assert share == f"mostly {text}"
    # Ports whose text order is not their numeric order, above and at the tie.
    ends = [("127.0.0.9", 9), ("127.0.0.9", 9), ("127.0.0.9", 10), ("127.0.0.9", 10)] + [
        ("127.0.0.1", port) for port in (5000, 10000, 9999, 100000 % 65536, 42)
    ]
    _, text, _ = _named(ends)
    assert text == "127.0.0.9:10 (2), 127.0.0.9:9 (2), 127.0.0.1:10000 (1)"


def test_three_candidates_of_more_destinations_keep_the_tables_order() -> None:
    # Counts 3, 2, 2, 1: the three at or above the third count are kept as the columns
    # order them (by address), unranked, as before.
    ends = [("127.0.0.3", 1)] * 3 + [("127.0.0.2", 2)] * 2 + [("127.0.0.1", 3)] * 2
    ends.append(("127.0.0.4", 4))
    rows = np.arange(len(ends), dtype=np.intp)
    table = destinations_of_table(_columns(ends), rows)
    assert [(str(dest.address), count) for dest, count in table.items()] == [
        ("127.0.0.1", 2),
        ("127.0.0.2", 2),
        ("127.0.0.3", 3),
    ]
    _named(ends)
