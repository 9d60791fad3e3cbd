"""Each rule ported to columns against its object path, on one live dump
(tests/lean_scene.py): the same findings -- code, severity, subject, count, summary,
evidence -- from the table as from the index's socket objects. The thresholds are lowered so
that a few thousand loopback sockets make findings (a rule that says nothing both ways would
prove nothing)."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator

import numpy as np
import pytest

from tcphealth.columnar import STATE_OF_CODE
from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rules import (
    close_wait,
    closing,
    established,
    keepalive,
    piled,
    port_collision,
    ports,
    receive_drops,
    time_wait,
)
from tcphealth.model import Severity, TcpState
from tests import lean_scene

pytestmark = lean_scene.LIVE_NETLINK


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lean_scene.BothPaths]:
    with lean_scene.captured(tmp_path_factory.mktemp("lean"), 28860) as both:
        yield both


def test_ports_counted_over_columns(both: lean_scene.BothPaths) -> None:
    # Every supply of ports a few thousand sockets use is a finding at these ratios.
    thresholds = dataclasses.replace(
        Thresholds(), ports_warning_ratio=0.001, ports_critical_ratio=0.02
    )
    index = SnapshotIndex.build(both.snapshot)
    # In the same order too: findings that tie in the report's order keep the rule's.
    by_objects = ports.check(index, thresholds)
    by_columns = ports.check_table(index, thresholds, both.table)
    assert by_columns == by_objects
    assert len(by_objects) >= 2
    assert {f.code for f in by_objects} == {ports.PORTS_EXHAUSTING}
    assert any(f.subject.pids for f in by_objects)  # a holder named from the columns too


def test_ports_counted_over_columns_only_where_a_supply_can_be_judged(
    both: lean_scene.BothPaths,
) -> None:
    # The columns write out only the supplies toward a remote port whose sockets together
    # reach a threshold; at a share only the largest supply reaches, the rest are left out
    # and the findings are still the object path's.
    index = SnapshotIndex.build(both.snapshot)
    sysctls = both.snapshot.sysctls
    usable, (low, high), _, _ = ports.usable_ports(sysctls)
    reserved = sysctls.ip_local_reserved_ports
    taken, _, _ = ports._counted(index, low, high, reserved)
    largest = max(taken.values())
    thresholds = dataclasses.replace(
        Thresholds(),
        ports_warning_ratio=largest / usable,
        ports_critical_ratio=1.0,
        time_wait_ports_warning_ratio=1.0,
    )
    by_objects = ports.check(index, thresholds)
    by_columns = ports.check_table(index, thresholds, both.table)
    assert by_columns == by_objects
    assert [f.count for f in by_objects] == [largest] * len(by_objects) and by_objects
    could = ports._could_be_judged(thresholds, usable, high - low + 1)
    every, _, _ = ports._counted_table(both.table, low, high, reserved)
    written, _, _ = ports._counted_table(both.table, low, high, reserved, could)
    assert every == taken
    assert len(by_objects) <= len(written) < len(every)
    assert all(written[key] == every[key] for key in written)


def test_time_wait_counted_over_columns(both: lean_scene.BothPaths) -> None:
    thresholds = dataclasses.replace(
        Thresholds(), time_wait_ports_warning_ratio=0.0001, time_wait_ports_critical_ratio=0.002
    )
    index = SnapshotIndex.build(both.snapshot)
    by_objects = time_wait.check(index, thresholds)
    by_columns = time_wait.check_table(index, thresholds, both.table)
    assert by_columns == by_objects
    assert time_wait.PORTS_EXHAUSTING in {f.code for f in by_objects}


def test_time_wait_bucket_limit_counted_over_columns(both: lean_scene.BothPaths) -> None:
    # A bucket limit the scene's TIME_WAIT come near: the finding lists their destinations.
    snapshot = both.snapshot
    held = sum(1 for s in snapshot.sockets if s.state is TcpState.TIME_WAIT)
    assert held
    limited = dataclasses.replace(
        snapshot, sysctls=dataclasses.replace(snapshot.sysctls, tcp_max_tw_buckets=held)
    )
    index = SnapshotIndex.build(limited)
    by_objects = time_wait.check(index, Thresholds())
    by_columns = time_wait.check_table(index, Thresholds(), both.table)
    assert by_columns == by_objects
    assert time_wait.BUCKET_LIMIT in {f.code for f in by_objects}


def test_keepalive_counted_over_columns(both: lean_scene.BothPaths) -> None:
    # Idle for a second counts: the generator's connections are quiet.
    thresholds = dataclasses.replace(Thresholds(), established_idle_seconds=0)
    index = SnapshotIndex.build(both.snapshot)
    by_objects = keepalive.check(index, thresholds)
    by_columns = keepalive.check_table(index, thresholds, both.table)
    assert by_columns == by_objects
    idle = [f for f in by_objects if f.code == keepalive.IDLE_NO_KEEPALIVE]
    assert len(idle) >= 2 and all(f.subject.pids for f in idle)


def test_piles_counted_over_columns(both: lean_scene.BothPaths) -> None:
    # The generator's clients hold dozens of connections to each of its listeners.
    thresholds = dataclasses.replace(Thresholds(), established_pile_warning=20)
    index = SnapshotIndex.build(both.snapshot)
    by_objects = piled.check(index, thresholds)
    by_columns = piled.check_table(index, thresholds, both.table)
    assert by_columns == by_objects
    assert len(by_objects) >= 2 and all(f.subject.pids for f in by_objects)
    # at the default the two paths agree as well
    assert piled.check_table(index, Thresholds(), both.table) == piled.check(index, Thresholds())


def test_established_counted_over_columns(both: lean_scene.BothPaths) -> None:
    # The busy pair's 3,000 unread bytes are "not reading" at this threshold.
    thresholds = dataclasses.replace(Thresholds(), established_recv_queue_bytes=2000)
    index = SnapshotIndex.build(both.snapshot)
    by_objects = established.check(index, thresholds)
    by_columns = established.check_table(index, thresholds, both.table)
    assert by_columns == by_objects
    assert established.NOT_READING in {f.code for f in by_objects}


def test_local_peers_found_over_columns(both: lean_scene.BothPaths) -> None:
    # The not-reading finding names the local process sending to it (local_peers toward
    # ESTABLISHED): over the lean index it joins the columns instead of making every
    # ESTABLISHED socket an object.
    thresholds = dataclasses.replace(Thresholds(), established_recv_queue_bytes=2000)
    by_objects = established.check(SnapshotIndex.build(both.snapshot), thresholds)
    index = lean_index(both)
    by_columns = established.check_table(index, thresholds, both.table)
    assert by_columns == by_objects
    assert any(
        e.name == "local_peer"
        for f in by_objects
        if f.code == established.NOT_READING
        for e in f.evidence
    )
    assert TcpState.ESTABLISHED not in index.by_state


def test_receive_drops_counted_over_columns(both: lean_scene.BothPaths) -> None:
    # Loopback drops nothing on demand: the same made-up drops on a few sockets of both
    # paths (rows and sockets are in the same order), a listener's among them (not data).
    snapshot, table = both.snapshot, both.table
    sockets = list(snapshot.sockets)
    drops = table.columns.drops.copy()
    for row in range(0, len(sockets), 97):
        drops[row] = row % 5
        sockets[row] = dataclasses.replace(sockets[row], drops=row % 5)
    listener = next(i for i, s in enumerate(sockets) if s.state is TcpState.LISTEN)
    drops[listener] = 9
    sockets[listener] = dataclasses.replace(sockets[listener], drops=9)
    changed = dataclasses.replace(table, columns=dataclasses.replace(table.columns, drops=drops))
    index = SnapshotIndex.build(dataclasses.replace(snapshot, sockets=tuple(sockets)))
    by_objects = receive_drops.check(index, Thresholds())
    by_columns = receive_drops.check_table(index, Thresholds(), changed)
    assert by_columns == by_objects
    assert len([f for f in by_objects if f.code == receive_drops.RECEIVE_DROPS]) >= 2


# The states the lean path leaves as columns (sources.lean.BULK_CODES once CLOSE_WAIT and
# FIN_WAIT2 joined ESTABLISHED and TIME_WAIT).
_LAZY = (1, 5, 6, 8)


def lean_index(both: lean_scene.BothPaths) -> SnapshotIndex:
    """The index the lean path builds: the snapshot lists as objects the sockets of the
    states not in _LAZY, every socket is a row of the table."""
    lazy = {STATE_OF_CODE[code] for code in _LAZY}
    kept = tuple(s for s in both.snapshot.sockets if s.state not in lazy)
    return SnapshotIndex.build_table(
        dataclasses.replace(both.snapshot, sockets=kept), both.table, _LAZY
    )


# Low enough that the generator's holders (hundreds of CLOSE_WAIT each) warn and this
# process's few do not (but their unread request does); then one that makes everything warn.
_CLOSE_WAIT_LOW = dataclasses.replace(
    Thresholds(),
    close_wait_warning=50,
    close_wait_critical=400,
    close_wait_leak_seconds=0,
    close_wait_unread_warning=1,
)
_CLOSE_WAIT_ONE = dataclasses.replace(
    Thresholds(), close_wait_warning=1, close_wait_critical=2, close_wait_unread_warning=1
)


@pytest.mark.parametrize("thresholds", [Thresholds(), _CLOSE_WAIT_LOW, _CLOSE_WAIT_ONE])
def test_close_wait_counted_over_columns(
    both: lean_scene.BothPaths, thresholds: Thresholds
) -> None:
    by_objects = close_wait.check(SnapshotIndex.build(both.snapshot), thresholds)
    index = lean_index(both)
    by_columns = close_wait.check_table(index, thresholds, both.table)
    assert by_columns == by_objects
    assert by_objects
    # Objects were made only for the rows no descriptor is known to hold and for the
    # holders below the warning count.
    assert TcpState.CLOSE_WAIT not in index.by_state


def test_close_wait_codes_the_scene_makes(both: lean_scene.BothPaths) -> None:
    # Every code a live look can give, over the three settings above: HELD needs a source
    # without receive queues, SLOW_CLOSE and PEER_IDLE_CLOSE a series or a paste's listings.
    codes = set()
    for thresholds in (Thresholds(), _CLOSE_WAIT_LOW, _CLOSE_WAIT_ONE):
        codes |= {f.code for f in close_wait.check_table(lean_index(both), thresholds, both.table)}
    assert codes == {
        close_wait.NOT_READING,
        close_wait.NOT_CLOSED,
        close_wait.UNREAD_DATA,
        close_wait.UNACCEPTED,
        close_wait.OWNER_UNKNOWN,
        close_wait.AGE_DECIDES,
    }
    # The dual-stack listener's CLOSE_WAIT is there, its destination v4-mapped.
    if socket.has_ipv6:
        columns = both.table.columns
        assert np.count_nonzero(
            (columns.state == 8) & (columns.family == 10) & (columns.dst_low >> 32 == 0xFFFF)
        )
    # The generator's holders name their local peer (themselves: each holds both ends).
    low = close_wait.check_table(lean_index(both), _CLOSE_WAIT_LOW, both.table)
    named = [f for f in low if f.code == close_wait.NOT_READING]
    assert named and all(any(e.name == "local_peer" for e in f.evidence) for f in named)


# The generator's holders (hundreds of FIN_WAIT2 each) warn, this process's two do not and
# are old enough to be said; its orphaned two are a finding. Then everything warns.
_FIN_WAIT2_LOW = dataclasses.replace(
    Thresholds(),
    fin_wait2_held_warning=50,
    fin_wait2_held_critical=400,
    fin_wait2_orphan_warning=1,
    stuck_seconds=0,
)
_FIN_WAIT2_ONE = dataclasses.replace(
    Thresholds(), fin_wait2_held_warning=1, fin_wait2_held_critical=2, fin_wait2_orphan_warning=1
)


@pytest.mark.parametrize("thresholds", [Thresholds(), _FIN_WAIT2_LOW, _FIN_WAIT2_ONE])
def test_closing_counted_over_columns(both: lean_scene.BothPaths, thresholds: Thresholds) -> None:
    by_objects = closing.check(SnapshotIndex.build(both.snapshot), thresholds)
    index = lean_index(both)
    by_columns = closing.check_table(index, thresholds, both.table)
    assert by_columns == by_objects
    assert by_objects
    assert TcpState.FIN_WAIT2 not in index.by_state and TcpState.CLOSE_WAIT not in index.by_state


def test_closing_codes_the_scene_makes(both: lean_scene.BothPaths) -> None:
    # The FIN_WAIT2 codes; FIN_WAIT1, CLOSING and LAST_ACK need a FIN that goes unacknowledged,
    # which loopback does not lose (their sockets are objects, read as before).
    found = [
        f
        for thresholds in (Thresholds(), _FIN_WAIT2_LOW, _FIN_WAIT2_ONE)
        for f in closing.check_table(lean_index(both), thresholds, both.table)
    ]
    assert {f.code for f in found} == {
        closing.FIN_WAIT2_HELD,
        closing.FIN_WAIT2_AGE_DECIDES,
        closing.FIN_WAIT2_ORPHANS,
    }
    # Both stories the evidence tells: a local peer, and a holder that also keeps a
    # CLOSE_WAIT besides the far ends of its own (this process: the one never accepted).
    stories = {e.value for f in found for e in f.evidence if e.name == "close_wait_same_holder"}
    assert 0 in stories and any(isinstance(v, int) and v > 0 for v in stories)
    assert any(e.name == "local_peer" for f in found for e in f.evidence)


def test_port_collision_counted_over_columns(
    both: lean_scene.BothPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shares of the port range a few thousand sockets reach (the rule's shares are no knobs):
    # every (service, client) pair warns, the one holding the most client ports is critical
    # (the generator's listeners hold a dozen or more each, this process's two).
    held: dict[tuple[str, str], set[int | None]] = {}
    for s in both.snapshot.sockets:
        if s.state is TcpState.CLOSE_WAIT:
            held.setdefault((str(s.local), str(s.remote.address)), set()).add(s.remote.port)
    most = max(len(ports) for ports in held.values())
    assert min(len(ports) for ports in held.values()) < most
    size = port_collision.range_size()
    monkeypatch.setattr(port_collision, "WARNING_SHARE", 1 / size)
    monkeypatch.setattr(port_collision, "CRITICAL_SHARE", most / size)
    by_objects = port_collision.check(SnapshotIndex.build(both.snapshot), Thresholds())
    by_columns = port_collision.check_table(lean_index(both), Thresholds(), both.table)
    assert by_columns == by_objects
    assert {f.severity for f in by_objects} == {Severity.WARNING, Severity.CRITICAL}
    assert {f.code for f in by_objects} == {port_collision.COLLISION_RISK}
    assert any(f.subject.pids for f in by_objects)  # a holder named from the columns too


def test_port_collision_met_by_a_handshake_over_columns(both: lean_scene.BothPaths) -> None:
    # Loopback cannot open a connection on the 4-tuple of a CLOSE_WAIT it still holds (the
    # client's end is in use): a SYN_SENT made from one CLOSE_WAIT, its ends swapped, and a
    # SYN_RECV on another's tuple, added to both paths' objects.
    close_wait = [s for s in both.snapshot.sockets if s.state is TcpState.CLOSE_WAIT]
    opening = (
        dataclasses.replace(
            close_wait[3],
            state=TcpState.SYN_SENT,
            local=close_wait[3].remote,
            remote=close_wait[3].local,
        ),
        dataclasses.replace(close_wait[-2], state=TcpState.SYN_RECV),
    )
    snapshot = dataclasses.replace(both.snapshot, sockets=(*both.snapshot.sockets, *opening))
    by_objects = port_collision.check(SnapshotIndex.build(snapshot), Thresholds())
    lazy = {STATE_OF_CODE[code] for code in _LAZY}
    kept = tuple(s for s in snapshot.sockets if s.state not in lazy)
    index = SnapshotIndex.build_table(
        dataclasses.replace(snapshot, sockets=kept), both.table, _LAZY
    )
    by_columns = port_collision.check_table(index, Thresholds(), both.table)
    assert by_columns == by_objects
    collision = [f for f in by_objects if f.code == port_collision.COLLISION]
    assert len(collision) == 1 and collision[0].count == 2
