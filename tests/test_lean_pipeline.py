"""The lean path of `tcphealth serve` as a whole against the object path, on one live dump
(tests/lean_scene.py): the snapshot with only its non-bulk sockets as objects, the table,
the diagnosis with the rules' table checks, the report and the metrics counted over the
columns -- the same exposition, byte for byte, as the full report's metrics of the whole
snapshot; ESTABLISHED and TIME_WAIT sockets made objects only where a finding asks."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from tcphealth import exporter
from tcphealth.columnar import COLUMN_NAMES, INFO_NAMES, DumpColumns
from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.model import Family, TcpState
from tcphealth.render.prometheus import exposition
from tcphealth.sources import columns, lean, netlink
from tests import lean_scene

pytestmark = lean_scene.LIVE_NETLINK


@dataclasses.dataclass
class Held:
    scene: lean_scene.Scene
    ports: frozenset[int]  # the load generator's


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Held]:
    with (
        lean_scene.generator(tmp_path_factory.mktemp("lean"), 28960) as ports,
        lean_scene.extra_scene() as scene,
    ):
        time.sleep(0.2)  # the closed ends of the generator's pairs reach FIN_WAIT2
        yield Held(scene, ports)


# "per-family": the two dumps the object path asks for; "at-once": the lean path's one dump
# of both families, which the object path reads as those two would give it.
@pytest.fixture(scope="module", params=["per-family", "at-once"])
def both(held: Held, request: pytest.FixtureRequest) -> lean_scene.BothPaths:
    return lean_scene.both_paths(
        held.scene.busy_client,
        ownerless=held.scene.orphan_peer,
        at_once=request.param == "at-once",
    )


# The defaults, and thresholds low enough that every rule with a table check finds
# something in a few thousand loopback sockets.
_LOW = dataclasses.replace(
    Thresholds(),
    ports_warning_ratio=0.001,
    ports_critical_ratio=0.02,
    time_wait_ports_warning_ratio=0.0001,
    time_wait_ports_critical_ratio=0.002,
    established_idle_seconds=0,
    established_recv_queue_bytes=2000,
    close_wait_warning=50,
    close_wait_leak_seconds=0,
    close_wait_unread_warning=1,
    fin_wait2_held_warning=50,
    fin_wait2_orphan_warning=1,
    stuck_seconds=0,
)


@pytest.mark.parametrize("thresholds", [Thresholds(), _LOW], ids=["defaults", "low"])
def test_the_lean_exposition_is_the_full_one(
    both: lean_scene.BothPaths, thresholds: Thresholds, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = exposition(exporter.report_families([both.snapshot], thresholds=thresholds))

    made: list[TcpState] = []
    materialise = SnapshotIndex._materialise

    def noted(index: SnapshotIndex, state: TcpState) -> None:
        made.append(state)
        materialise(index, state)

    monkeypatch.setattr(SnapshotIndex, "_materialise", noted)
    snapshot = lean.snapshot_of(
        both.table, both.scan, both.unseen, [], lean_scene.PROC, both.snapshot.host.taken_at
    )
    # Only the sockets outside ESTABLISHED, TIME_WAIT, CLOSE_WAIT and FIN_WAIT2 are objects.
    assert {s.state for s in snapshot.sockets}.isdisjoint(
        {TcpState.ESTABLISHED, TcpState.TIME_WAIT, TcpState.CLOSE_WAIT, TcpState.FIN_WAIT2}
    )
    assert len(snapshot.sockets) < len(both.snapshot.sockets) // 2
    lean_families = exporter.table_families_of(
        snapshot, both.table, lazy=lean.BULK_CODES, thresholds=thresholds
    )
    assert exposition(lean_families).decode() == full.decode()
    # A bulk state is made objects at most once, and only for a rule without a table check
    # that asks for its sockets: at the low thresholds none does (the local peers a finding
    # names are found over the columns). At the defaults it depends on the rest of this
    # shared host's sockets.
    assert len(made) == len(set(made))
    if thresholds is _LOW:
        assert made == []

    text = full.decode()
    assert "tcphealth_finding_sockets{" in text
    if thresholds is _LOW:
        for code in (
            "ephemeral-ports-exhausting",
            "time-wait-ports-exhausting",
            "established-idle-no-keepalive",
            "established-not-reading",
            "close-wait-not-reading",
            "close-wait-unread-data",
            "close-wait-age-decides",
            "fin-wait2-held",
            "fin-wait2-age-decides",
            "fin-wait2-orphans",
        ):
            assert f'code="{code}"' in text


def _held_here() -> frozenset[int]:
    """The socket inodes this process holds (the extra scene's, IPv6 ones among them)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return frozenset(inodes)


def _scene_rows(table: DumpColumns, ports: frozenset[int]) -> list[tuple[int, ...]]:
    """The generator's sockets but TIME_WAIT (which it remakes as they expire) and those
    this process holds, in table order: what identifies each and what its attributes say."""
    mine = _held_here()
    rows = [
        at
        for at in range(len(table))
        if (
            int(table.sport[at]) in ports
            or int(table.dport[at]) in ports
            or int(table.inode[at]) in mine
        )
        and int(table.state[at]) != 6
    ]
    return [
        (
            int(table.cookie[at]),
            int(table.family[at]),
            int(table.state[at]),
            int(table.inode[at]),
            int(table.rqueue[at]),
            bool(table.has_info[at]),
            int(table.shutdown[at]),
            int(table.drops[at]) >= 0,
        )
        for at in rows
    ]


def test_one_dump_of_both_families_lists_what_the_two_dumps_list(held: Held) -> None:
    """The kernel's side of the lean path's request: the generator's sockets, in the order
    and with the attributes the object path's two dumps give them."""
    decoded = columns.decode(lean_scene.received_of_both(), "both")
    assert decoded is not None and decoded[1]
    at_once = columns.in_family_order(decoded[0])
    parts = []
    for family in (Family.IPV4, Family.IPV6):
        one = columns.decode(lean_scene.received(family), "one")
        assert one is not None and one[1]
        parts.append(one[0])
    per_family = columns.joined(parts)
    expected = _scene_rows(per_family, held.ports)
    assert len(expected) > lean_scene.SCENE_SOCKETS // 2
    if socket.has_ipv6:  # the extra scene's dual-stack listener and what it accepted
        assert any(row[1] == socket.AF_INET6 for row in expected)
    assert _scene_rows(at_once, held.ports) == expected


def test_what_the_columns_read_is_in_what_the_lean_path_asks_for(held: Held) -> None:
    """Every column a rule reads comes from an attribute the request asks for: tcp_info
    (every INFO_NAMES column), the socket's memory (drops) and the shutdown byte on every
    full socket but a listener's memory -- so narrowing the request, or a rule reading a
    field it does not ask for, cannot go unnoticed as zeros."""
    decoded = columns.decode(lean_scene.received_of_both(), "both")
    assert decoded is not None
    table = decoded[0]
    assert set(INFO_NAMES) <= set(COLUMN_NAMES)
    states = {
        int(table.state[at])
        for at in range(len(table))
        if int(table.sport[at]) in held.ports or int(table.dport[at]) in held.ports
    }
    assert {1, 5, 8, 10} <= states  # ESTABLISHED, FIN_WAIT2, CLOSE_WAIT, LISTEN
    full = [
        at
        for at in range(len(table))
        if int(table.state[at]) not in (3, 6)  # a request socket, TIME_WAIT: no attributes
        and (int(table.sport[at]) in held.ports or int(table.dport[at]) in held.ports)
    ]
    assert all(bool(table.has_info[at]) for at in full)
    assert all(int(table.shutdown[at]) >= 0 for at in full)
    assert all(int(table.drops[at]) >= 0 for at in full if int(table.state[at]) != 10)
    # tcp_info read, not zeros: the generator's connections have a round-trip time.
    assert any(int(table.rtt_us[at]) > 0 for at in full if int(table.state[at]) == 1)


def test_a_kernel_that_refuses_the_one_dump_is_asked_per_family(
    held: Held, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the kernel answers the dump of both families with an error (here: a request cut
    short, which it refuses with EINVAL), the lean path asks for one dump per family."""
    asked = netlink.build_request_of_both(1, with_tcp_info=True)
    short = struct.pack("=I", 16 + 8) + asked[4:24]  # the header and 8 bytes of the 60
    monkeypatch.setattr(netlink, "build_request_of_both", lambda *_, **__: short)
    with pytest.raises(netlink.NetlinkError, match="EINVAL"):
        columns.decode(netlink._received_of_both(netlink.DUMP_TIMEOUT), "both")
    table = lean._dumped(None)
    assert table is not None
    rows = _scene_rows(table, held.ports)
    assert len(rows) > lean_scene.SCENE_SOCKETS // 2
