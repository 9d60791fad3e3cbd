"""The bound-inactive rule with a port range that holds no port (low above high: a pasted or
made-up ``ip_local_port_range``). It divided by the range's size and crashed the whole
diagnosis; found by tests/test_verdict_properties.py with the range (0, -1)."""

from __future__ import annotations

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rules import bound
from tcphealth.model import Sysctls, TcpState
from tests.builders import snapshot, sock


def test_an_empty_port_range_gives_no_share_and_no_crash() -> None:
    held = [sock(TcpState.BOUND_INACTIVE, "127.0.0.1:*", pids=[7]) for _ in range(3)]
    empty = snapshot(held, sysctls=Sysctls(ip_local_port_range=(0, -1)))
    assert bound.check(SnapshotIndex.build(empty), Thresholds(ports_warning_ratio=0.0)) == []
    # The same sockets in a real range are a finding at that ratio: the test can fail.
    real = snapshot(held, sysctls=Sysctls(ip_local_port_range=(32768, 32770)))
    found = bound.check(SnapshotIndex.build(real), Thresholds(ports_warning_ratio=0.0))
    assert [f.subject.pid for f in found] == [7]
