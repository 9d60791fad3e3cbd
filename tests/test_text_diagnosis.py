"""The incidents whose cause is known (../shared/realworld/SOURCES.md, section b): read from the
pasted text, the top finding names that cause."""

from __future__ import annotations

from pathlib import Path

from tcphealth.diagnose import diagnose
from tcphealth.model import Blame, Severity, TcpState
from tcphealth.sources import load, load_series

REALWORLD = Path(__file__).resolve().parent.parent / "fixtures" / "realworld"


def fixture(name: str) -> Path:
    path = REALWORLD / name
    assert path.is_file(), f"fixture missing: {path}"
    return path


def test_kube_proxy_node_is_not_accepting_not_leaking() -> None:
    """Listeners at 129/128 and CLOSE_WAIT with no owner on them: kube-proxy is not calling
    accept(); it is not a close() leak."""
    findings = diagnose(load(fixture(
        "moooofly-lls_k8s-node_ss_kube-proxy-accept-queue-full_closewait-no-owner.txt"
    )))  # fmt: skip
    top = findings[0]
    assert top.code == "listen-queue-full"
    assert top.severity is Severity.CRITICAL
    assert top.blame is Blame.LOCAL_APPLICATION
    assert (top.subject.pid, top.subject.process) == (1448, "kube-proxy")
    codes = {f.code for f in findings}
    assert "close-wait-unaccepted" in codes
    assert not any("leak" in f.code for f in findings)
    unaccepted = next(f for f in findings if f.code == "close-wait-unaccepted")
    assert unaccepted.count == 100
    assert unaccepted.subject.endpoint == "[::]:30720"


def test_kube_node2_syn_recv_is_overflow_not_a_flood() -> None:
    findings = diagnose(load(fixture(
        "moooofly-lls_k8s-node2_ss_synrecv-closewait_accept-queue-129of128.txt"
    )))  # fmt: skip
    assert findings[0].code == "listen-queue-full"
    assert findings[0].subject.process == "kube-proxy"
    assert not any("flood" in f.code for f in findings)


def test_lab_suspended_listener_is_not_accepting() -> None:
    findings = diagnose(load(fixture(
        "moooofly-lls_lab_ss-natp-o_timers_closewait-unaccepted_finwait2-timewait-timer_synsent-collision.txt"
    )))  # fmt: skip
    top = findings[0]
    assert top.code == "listen-queue-full"
    assert (top.subject.pid, top.subject.process) == (11637, "nc")
    assert findings[1].code == "close-wait-unaccepted"
    assert not any("leak" in f.code for f in findings)


def test_tengine_time_wait_at_tcp_max_tw_buckets() -> None:
    """The paste lists no TIME_WAIT socket; its `netstat -n | awk` summaries count them."""
    path = fixture("moooofly-lls_tengine_netstat-ss_timewait-pinned-65536-tw_buckets_kafka9092.txt")
    last = diagnose(load(path))
    assert last[0].code == "time-wait-bucket-limit"
    assert last[0].state is TcpState.TIME_WAIT
    assert last[0].blame is Blame.KERNEL_LIMIT
    assert last[0].count == 56889  # the last sample: 87 % of 65,536
    # ... but the same summary sat at the ceiling in 5 of the 9 counts before it (#22): then
    # closes skipped TIME_WAIT, which the last count alone would hide.
    assert last[0].severity is Severity.CRITICAL
    assert "reached the ceiling in 5 of the 9 earlier counts" in last[0].summary
    assert any("does not list the sockets" in text for text in last[0].unchecked)
    # Every sample names the same cause; the first sat over the ceiling.
    tops = [diagnose(snapshot)[0] for snapshot in load_series(path)]
    assert {f.code for f in tops} == {"time-wait-bucket-limit"}
    assert tops[0].count == 65547
    assert tops[0].severity is Severity.CRITICAL
    assert "ceiling" in tops[0].summary
