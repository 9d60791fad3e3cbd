"""The index lookups that replaced per-finding passes over a whole state (issue 23's cost) give
exactly what those passes gave.

Each lookup is compared with the pass it replaced, written out here as the reference: on
generated loopback scenes (both ends of each connection on this host, holders that share
sockets, relays that hold CLOSE_WAIT and FIN_WAIT2 at once, endpoints equal but not shared),
and on every snapshot fixture.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcphealth.diagnose import diagnose
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rules.closing import (
    FIN_WAIT2_HELD,
    _held_fin_wait2_groups,
    _relayed_close_waits,
)
from tcphealth.diagnose.rules.port_collision import ASSUMED_RANGE, _risk_groups
from tcphealth.diagnose.shared import local_peers
from tcphealth.diagnose.wording import pids_key
from tcphealth.model import Endpoint, Family, Snapshot, Socket, TcpState
from tcphealth.sources.snapshot_file import read_snapshots
from tests.builders import listener, snapshot, sock

FIXTURES = Path(__file__).parent.parent / "fixtures"
SNAPSHOT_FIXTURES = sorted([*FIXTURES.glob("*.json"), *(FIXTURES / "series").glob("*.json")])


def relayed_by_rescan(index: SnapshotIndex, pids: tuple[int, ...], fin_wait2: list[Socket]) -> int:
    """What closing._relayed_close_waits counted before: a pass over every CLOSE_WAIT."""
    if not pids:
        return 0
    far_ends = {(s.remote, s.local) for s in fin_wait2}
    return sum(
        1
        for s in index.sockets(TcpState.CLOSE_WAIT)
        if set(s.pids) & set(pids) and (s.local, s.remote) not in far_ends
    )


def peers_by_rescan(
    index: SnapshotIndex, sockets: Iterable[Socket], peer_state: TcpState
) -> tuple[int, ...]:
    """What shared.local_peers found before: every socket in ``peer_state`` compared."""
    found: set[int] = set()
    for mine in sockets:
        if not index.is_local(mine.remote.address):
            continue
        for other in index.sockets(peer_state):
            if other.pids and other.local == mine.remote and other.remote == mine.local:
                found.update(other.pids)
    return tuple(sorted(found))


def assert_lookups_match(snap: Snapshot) -> None:
    index = SnapshotIndex.build(snap)
    held_cw: dict[tuple[int, ...], list[Socket]] = {}
    for s in index.sockets(TcpState.CLOSE_WAIT):
        if s.pids:
            held_cw.setdefault(pids_key(s.pids), []).append(s)
    for pids, fin_wait2 in _held_fin_wait2_groups(index.sockets(TcpState.FIN_WAIT2)).items():
        assert _relayed_close_waits(index, pids, fin_wait2) == relayed_by_rescan(
            index, pids, fin_wait2
        )
        assert local_peers(index, fin_wait2, TcpState.CLOSE_WAIT) == peers_by_rescan(
            index, fin_wait2, TcpState.CLOSE_WAIT
        )
    for group in held_cw.values():
        assert local_peers(index, group, TcpState.FIN_WAIT2) == peers_by_rescan(
            index, group, TcpState.FIN_WAIT2
        )
    for state in (TcpState.CLOSE_WAIT, TcpState.FIN_WAIT2, TcpState.ESTABLISHED):
        by_pid = index.held_by(state)
        for pid in {pid for s in index.sockets(state) for pid in s.pids}:
            expected = [s for s in index.sockets(state) if pid in s.pids]
            assert sorted(map(id, by_pid[pid])) == sorted(map(id, expected))


HOLDERS = st.sampled_from([(), (100,), (200,), (100, 200), (200, 100), (300,)])
STATE_PAIRS = st.sampled_from(
    [
        ("CLOSE_WAIT", "FIN_WAIT2"),  # the server's end waits to close, the client half-closed
        ("FIN_WAIT2", "CLOSE_WAIT"),  # the server half-closed
        ("ESTABLISHED", "ESTABLISHED"),
        ("CLOSE_WAIT", "ESTABLISHED"),
    ]
)


@st.composite
def loopback_scenes(draw: st.DrawFn) -> Snapshot:
    """Connections with both ends on this host: a server end on a listening port (or one no
    longer listened on) and a client end on a few addresses and ports, so that some client
    ends repeat, toward two server addresses; each end's holders drawn on its own."""
    listening = draw(st.sets(st.sampled_from([8080, 9090]), max_size=2))
    sockets: list[Socket] = [listener(f"127.0.0.1:{port}", pids=[100]) for port in listening]
    for _ in range(draw(st.integers(0, 14))):
        server_port = draw(st.sampled_from([8080, 9090]))
        client = f"127.0.0.{draw(st.integers(2, 3))}:{draw(st.integers(40000, 40003))}"
        server = f"127.0.0.{draw(st.sampled_from([1, 4]))}:{server_port}"
        server_state, client_state = draw(STATE_PAIRS)
        sockets.append(sock(server_state, server, client, pids=draw(HOLDERS)))
        if draw(st.booleans()):  # the other end may be gone, or held by nobody we see
            sockets.append(sock(client_state, client, server, pids=draw(HOLDERS)))
    return snapshot(sockets)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scene=loopback_scenes())
def test_the_lookups_find_what_a_pass_over_the_state_found(scene: Snapshot) -> None:
    assert_lookups_match(scene)


@pytest.mark.parametrize("path", SNAPSHOT_FIXTURES, ids=lambda path: path.name)
def test_the_lookups_find_what_a_pass_found_in_every_fixture(path: Path) -> None:
    for snap in read_snapshots(path):
        assert_lookups_match(snap)


def test_a_relay_counts_its_other_close_waits_once_however_many_pids_share_them() -> None:
    # pids 100 and 200 (a forked pair) hold FIN_WAIT2 toward 127.0.0.2 and, both of them, one
    # CLOSE_WAIT from elsewhere: the relay's story, with that CLOSE_WAIT counted once.
    held = [100, 200]
    scene = snapshot(
        listener("127.0.0.1:8080", pids=[300]),
        [
            sock("FIN_WAIT2", f"127.0.0.1:{40000 + i}", "127.0.0.2:9000", pids=held)
            for i in range(600)
        ],
        sock("CLOSE_WAIT", "127.0.0.1:8080", "127.0.0.9:50000", pids=held),
    )
    index = SnapshotIndex.build(scene)
    fin_wait2 = index.sockets(TcpState.FIN_WAIT2)
    assert _relayed_close_waits(index, (100, 200), fin_wait2) == 1
    (finding,) = [f for f in diagnose(scene) if f.code == FIN_WAIT2_HELD]
    assert {e.name: e.value for e in finding.evidence}["close_wait_same_holder"] == 1


RiskGroup = tuple[set[int], int, dict[tuple[int, ...], int]]  # ports, outside, per holder


def risk_groups_by_value(close_wait: list[Socket]) -> dict[object, RiskGroup]:
    """What port_collision grouped before: by (local endpoint, remote address) values."""
    low, high = ASSUMED_RANGE
    groups: dict[object, tuple[set[int], list[int], dict[tuple[int, ...], int]]] = {}
    for s in close_wait:
        port = s.remote.port
        if port is None or s.local.port is None:
            continue
        ports, outside, pids = groups.setdefault((s.local, s.remote.address), (set(), [0], {}))
        if low <= port <= high:
            ports.add(port)
            pids[pids_key(s.pids)] = pids.get(pids_key(s.pids), 0) + 1
        else:
            outside[0] += 1
    return {key: (ports, outside[0], pids) for key, (ports, outside, pids) in groups.items()}


# Shared objects, as a source shares them, and equal ones made afresh for each socket.
_HERE = ipaddress.ip_address("10.0.0.7")
_UNSPECIFIED = ipaddress.ip_address("0.0.0.0")
_SERVICE = Endpoint(_HERE, 8443)
_CLIENT = ipaddress.ip_address("10.0.0.9")
LOCALS = st.sampled_from(
    [
        lambda: _SERVICE,
        lambda: Endpoint(ipaddress.ip_address("10.0.0.7"), 8443),
        lambda: Endpoint(_HERE, 9443),
        lambda: Endpoint(_UNSPECIFIED, 8443, "web-1"),
        lambda: Endpoint(_UNSPECIFIED, 8443, "web-2"),
        lambda: Endpoint(_HERE, None),
    ]
)
CLIENTS = st.sampled_from(
    [lambda: _CLIENT, lambda: ipaddress.ip_address("10.0.0.9"), lambda: _UNSPECIFIED]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(
        st.tuples(LOCALS, CLIENTS, st.sampled_from([None, 80, 32768, 40000, 61000]), HOLDERS),
        max_size=20,
    )
)
def test_collision_risk_groups_are_made_by_value_whatever_objects_are_shared(
    rows: list[tuple[Any, Any, int | None, tuple[int, ...]]],
) -> None:
    close_wait = [
        Socket(Family.IPV4, local(), Endpoint(client(), port), TcpState.CLOSE_WAIT, pids=pids)
        for local, client, port, pids in rows
    ]
    groups = _risk_groups(close_wait)
    assert {
        key: (group.ports, group.outside, group.pids) for key, group in groups.items()
    } == risk_groups_by_value(close_wait)
    assert list(groups) == list(risk_groups_by_value(close_wait))  # first seen, first listed
