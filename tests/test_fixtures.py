"""The committed scenario snapshots are exactly what fixtures/make_scenarios.py writes, and
every one of them loads through the snapshot reader."""

from __future__ import annotations

import importlib.util
import ipaddress
from pathlib import Path
from types import ModuleType

import pytest

from tcphealth import sources
from tcphealth.sources.snapshot_file import series_to_json, snapshot_to_json

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DOCUMENTATION_AND_PRIVATE = [
    ipaddress.ip_network(n)
    for n in (
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "10.0.0.0/8",
        "127.0.0.0/8",
        "0.0.0.0/32",
        "2001:db8::/32",
        "::/128",
    )
]


def _scenarios() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_scenarios", FIXTURES / "make_scenarios.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCENARIOS = _scenarios().SCENARIOS


def test_the_fixture_directory_holds_exactly_the_scenarios() -> None:
    assert sorted(path.stem for path in FIXTURES.glob("*.json")) == sorted(SCENARIOS)
    assert set(SCENARIOS) >= {
        "healthy",
        "close-wait-leak",
        "listener-not-accepting",
        "time-wait-port-exhaustion",
        "time-wait-buckets",
        "half-close-fin-wait2",
        "syn-sent-unanswered",
        "fd-limit",
    }


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_fixture_is_up_to_date_and_loads(name: str) -> None:
    path = FIXTURES / f"{name}.json"
    snapshot = SCENARIOS[name]()
    assert path.read_text(encoding="utf-8") == snapshot_to_json(snapshot), "run `make fixtures`"
    assert sources.load(path) == snapshot
    assert snapshot.host.taken_at == 1714564800.0
    for sock in snapshot.sockets:
        for address in (sock.local.address, sock.remote.address):
            assert any(
                address in network
                for network in DOCUMENTATION_AND_PRIVATE
                if network.version == address.version
            ), address


def test_the_scenarios_have_the_shape_their_names_promise() -> None:
    leak = SCENARIOS["close-wait-leak"]()
    close_wait = [s for s in leak.sockets if s.state.value == "CLOSE_WAIT"]
    assert len(close_wait) >= 200
    assert {(s.pids, s.recv_queue, str(s.remote)) for s in close_wait} == {
        ((812,), 0, "10.20.0.15:5432")
    }
    listener = SCENARIOS["listener-not-accepting"]()
    (busy,) = [s for s in listener.sockets if s.state.value == "LISTEN" and s.local.port == 8000]
    assert (busy.recv_queue, busy.listen_backlog) == (129, 128)
    assert listener.counters["TcpExt.ListenOverflows"] > 0
    assert any(s.state.value == "CLOSE_WAIT" and s.inode == 0 for s in listener.sockets)
    assert any(s.state.value == "SYN_RECV" and s.local.port == 8000 for s in listener.sockets)
    ports = SCENARIOS["time-wait-port-exhaustion"]()
    assert ports.sysctls.ephemeral_port_count is not None
    time_wait = [s for s in ports.sockets if s.state.value == "TIME_WAIT"]
    assert len(time_wait) >= 0.9 * ports.sysctls.ephemeral_port_count
    assert {str(s.remote) for s in time_wait} == {"198.51.100.20:443"}
    buckets = SCENARIOS["time-wait-buckets"]()
    total = sum(1 for s in buckets.sockets if s.state.value == "TIME_WAIT")
    assert total == buckets.sysctls.tcp_max_tw_buckets
    assert buckets.counters["TcpExt.TCPTimeWaitOverflow"] > 0
    half = SCENARIOS["half-close-fin-wait2"]()
    held = [s for s in half.sockets if s.state.value == "FIN_WAIT2" and s.pids]
    assert held and all(s.inode for s in held)
    syn = SCENARIOS["syn-sent-unanswered"]()
    syn_sent = [s for s in syn.sockets if s.state.value == "SYN_SENT"]
    assert syn_sent and all(
        s.retransmits and s.timer and s.timer.value == "retransmit" for s in syn_sent
    )
    assert {str(s.remote) for s in syn_sent} == {"198.51.100.40:9100"}
    fds = SCENARIOS["fd-limit"]()
    assert any((p.open_fds, p.fd_soft_limit) == (1019, 1024) for p in fds.processes)


SERIES = _scenarios().SERIES


def test_the_series_directory_holds_exactly_the_series_scenarios() -> None:
    assert sorted(path.stem for path in (FIXTURES / "series").glob("*.json")) == sorted(SERIES)


@pytest.mark.parametrize("name", sorted(SERIES))
def test_series_fixture_is_up_to_date_and_loads(name: str) -> None:
    path = FIXTURES / "series" / f"{name}.json"
    samples = SERIES[name]()
    assert path.read_text(encoding="utf-8") == series_to_json(samples), "run `make fixtures`"
    assert sources.load_series(path) == samples
    assert [s.host.taken_at - 1714564800.0 for s in samples] == [0.0, 10.0, 20.0]
