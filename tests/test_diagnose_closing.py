"""FIN not acknowledged (FIN_WAIT1, CLOSING, LAST_ACK) and FIN_WAIT2 held or orphaned."""

from __future__ import annotations

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.model import (
    Blame,
    Severity,
    Socket,
    SubjectKind,
    Sysctls,
    TcpInfo,
    TimerKind,
)
from tests.builders import many, process, snapshot, sock, state_of


def fin_pending(
    state: str, count: int, peer: str, retransmits: int, inode: int = 0
) -> list[Socket]:
    return many(
        count,
        lambda i: sock(
            state,
            f"10.0.0.28:{42000 + i}",
            f"{peer}:80",
            send_queue=1,
            timer=TimerKind.RETRANSMIT,
            retransmits=retransmits,
            inode=inode,
        ),
    )


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ("FIN-WAIT-1", "fin-wait1-fin-unacknowledged"),
        ("CLOSING", "closing-fin-unacknowledged"),
        ("LAST-ACK", "last-ack-fin-unacknowledged"),
    ],
)
def test_fin_retransmitted_to_one_peer_blames_the_path(state: str, code: str) -> None:
    snap = snapshot(
        fin_pending(state, 25, "64.12.0.108", retransmits=5),
        sysctls=Sysctls(tcp_orphan_retries=0, tcp_max_orphans=65536),
        counters={"sockstat.TCP.orphan": 25, "TcpExt.TCPAbortOnTimeout": 7},
    )
    (finding,) = diagnose(snap)
    assert finding.code == code
    assert finding.severity is Severity.WARNING
    assert finding.blame is Blame.NETWORK
    assert finding.state is state_of(state)
    assert finding.subject.kind is SubjectKind.PEER
    assert finding.subject.endpoint == "64.12.0.108"
    assert finding.count == 25
    assert "never acknowledged: the peer or the path to it is gone" in finding.summary
    evidence = {e.name: e for e in finding.evidence}
    assert evidence["orphaned"].value == 25
    assert evidence["tcp_orphan_retries"].value == 0
    assert "102 s" in str(evidence["tcp_orphan_retries"].detail)
    assert evidence["orphans"].value == 25
    assert evidence["TCPAbortOnTimeout"].value == 7
    assert finding.next_steps[1].startswith("mtr -T -P 80 -c 10 -r 64.12.0.108")


def test_fin_wait1_just_sent_is_normal() -> None:
    # The jc capture: 6 orphaned FIN_WAIT1, tx_queue 1, timer 01, retrnsmt 0.
    assert diagnose(snapshot(fin_pending("FIN-WAIT-1", 6, "104.67.0.1", retransmits=0))) == []


def test_many_peers_make_a_host_subject() -> None:
    sockets = [
        *fin_pending("FIN-WAIT-1", 6, "104.67.0.1", retransmits=3),
        *fin_pending("FIN-WAIT-1", 6, "104.67.0.2", retransmits=3),
    ]
    (finding,) = diagnose(snapshot(sockets))
    assert finding.subject.kind is SubjectKind.HOST
    assert {e.name: e.value for e in finding.evidence}["peers"] == 2


def test_orphans_near_tcp_max_orphans_make_it_critical() -> None:
    snap = snapshot(
        fin_pending("FIN-WAIT-1", 12, "10.9.9.9", retransmits=4),
        sysctls=Sysctls(tcp_max_orphans=1000),
        counters={"sockstat.TCP.orphan": 950},
    )
    # The host-wide limit is a finding of its own (kernel_limits); this one is the FINs'.
    by_code = {finding.code: finding for finding in diagnose(snap)}
    assert set(by_code) == {"fin-wait1-fin-unacknowledged", "orphans-near-limit"}
    assert by_code["orphans-near-limit"].severity is Severity.WARNING  # 95%: near, not over
    finding = by_code["fin-wait1-fin-unacknowledged"]
    assert finding.severity is Severity.CRITICAL
    assert "near tcp_max_orphans" in finding.summary
    assert {e.name: e.detail for e in finding.evidence}["tcp_max_orphans"] == (
        "95% used, and beyond it the kernel resets orphans"
    )


def half_closed(
    count: int, pid: int | None, inode_base: int = 7000, waited_ms: int | None = None
) -> list[Socket]:
    """``count`` held FIN_WAIT2; ``waited_ms``: tcp_info's time since the peer's last ACK."""
    info = None if waited_ms is None else TcpInfo(last_ack_recv_ms=waited_ms)
    return many(
        count,
        lambda i: sock(
            "FIN-WAIT-2",
            f"10.0.0.1:{50000 + i}",
            "10.0.0.4:873",
            pids=() if pid is None else (pid,),
            inode=inode_base + i,
            tcp_info=info,
        ),
    )


def test_fin_wait2_held_by_a_process_waits_forever() -> None:
    snap = snapshot(
        half_closed(30, 77, waited_ms=125_000),
        processes=[process(77, "backup-agent")],
        sysctls=Sysctls(tcp_fin_timeout=60),
    )
    (finding,) = diagnose(snap)
    assert finding.code == "fin-wait2-held"
    assert finding.severity is Severity.WARNING
    assert finding.blame is Blame.REMOTE_PEER
    assert finding.subject.kind is SubjectKind.PROCESS
    assert (finding.subject.pid, finding.subject.process) == (77, "backup-agent")
    assert finding.count == 30
    assert "waits for peers that never close theirs" in finding.summary
    assert "tcp_fin_timeout (for orphans only) does not apply and they wait forever" in (
        finding.summary
    )
    evidence = {e.name: e.value for e in finding.evidence}
    assert (evidence["tcp_fin_timeout"], evidence["oldest_at_least_s"]) == (60, 125.0)
    assert finding.next_steps[0] == "ss -tnpo state fin-wait-2 | grep -F 'pid=77,'"
    assert finding.unchecked == ()


@pytest.mark.parametrize("waited_ms", [None, 4_000])
def test_fin_wait2_held_but_young_does_not_say_the_peers_never_close(
    waited_ms: int | None,
) -> None:
    """Issue 21: one look at a wait shorter than stuck_seconds (or of unknown length) says
    the peers have not closed yet, and names the commands that can tell."""
    (finding,) = diagnose(snapshot(half_closed(30, 77, waited_ms=waited_ms)))
    assert finding.code == "fin-wait2-held"
    assert "never" not in finding.summary and "forever" not in finding.summary
    assert "its peers have not closed theirs yet" in finding.summary
    (item,) = finding.unchecked
    assert item.startswith("whether these peers ever close their side: ")
    assert "--samples" in item and "watch" in item
    if waited_ms is None:
        assert "how long the oldest wait in FIN_WAIT2 has lasted is not known" in item
    else:
        assert "has lasted at least 4.0 s, under 60 s" in item


def test_the_catalogue_says_of_fin_wait2_held_what_a_young_finding_says() -> None:
    # Before: "its peers do not close" in `explain --codes`, which the finding itself claims
    # only once the wait has outlasted stuck_seconds.
    from tcphealth.diagnose import rule_of

    rule = rule_of("fin-wait2-held")
    assert rule is not None
    (code,) = [code for code in rule.codes if code.name == "fin-wait2-held"]
    (young,) = diagnose(snapshot(half_closed(30, 77, waited_ms=4_000)))
    assert "its peers have not closed theirs yet" in young.summary
    assert "its peers have not closed theirs yet" in code.meaning
    assert "do not close" not in code.meaning
    assert "never only once the wait outlasts stuck_seconds" in code.meaning


def test_fin_wait2_held_by_an_unseen_owner_still_counts_by_inode() -> None:
    (finding,) = diagnose(snapshot(half_closed(10, None)))
    assert finding.code == "fin-wait2-held"
    assert finding.subject.pid is None
    assert finding.summary.startswith("an unidentified process holds 10 connections")


def orphaned_fin_wait2(count: int) -> list[Socket]:
    return many(
        count,
        lambda i: sock(
            "FIN-WAIT-2",
            f"127.0.0.1:{30000 + i % 30000}",
            f"127.0.0.{1 + i // 30000}:12345",
            inode=0,
            timer=TimerKind.TIME_WAIT,
            timer_seconds=59.0,
        ),
    )


def test_a_few_orphaned_fin_wait2_are_normal() -> None:
    assert diagnose(snapshot(orphaned_fin_wait2(40), sysctls=Sysctls(tcp_fin_timeout=60))) == []


@pytest.mark.parametrize(("waited_ms", "said"), [(None, "age_unknown"), (125_000, "lasting")])
def test_a_few_held_fin_wait2_of_unknown_or_lasting_wait_are_info(
    waited_ms: int | None, said: str
) -> None:
    # Four held by kube-proxy (kubernetes#17641): below fin_wait2_held_warning, no timer.
    snap = snapshot(
        half_closed(4, 14125, waited_ms=waited_ms), processes=[process(14125, "kube-proxy")]
    )
    (finding,) = diagnose(snap)
    assert (finding.code, finding.severity, finding.blame) == (
        "fin-wait2-age-decides",
        Severity.INFO,
        Blame.REMOTE_PEER,
    )
    assert (finding.subject.pid, finding.count) == (14125, 4)
    evidence = {e.name: e.value for e in finding.evidence}
    assert evidence[said] == 4
    assert "below the 10 that warn" in finding.summary
    if waited_ms is None:
        (item,) = finding.unchecked
        assert item.startswith("whether these peers ever close their side: ")
        assert "a second look after 60 s settles it" in item
    else:
        assert "waited at least 125 s, past the 60 s a slow peer explains" in finding.summary
        assert finding.unchecked == ()


def test_a_few_held_fin_wait2_with_recent_traffic_are_quiet() -> None:
    # tcp_info: the peer's last ACK 4 s ago, a wait that a slow peer explains.
    assert diagnose(snapshot(half_closed(4, 77, waited_ms=4_000))) == []


def test_many_orphaned_fin_wait2_warn() -> None:
    (finding,) = diagnose(snapshot(orphaned_fin_wait2(5000), sysctls=Sysctls(tcp_fin_timeout=60)))
    assert finding.code == "fin-wait2-orphans"
    assert finding.severity is Severity.WARNING
    assert finding.subject.kind is SubjectKind.HOST
    assert finding.count == 5000
    assert finding.unchecked == ()


def test_orphan_is_told_by_its_timewait_timer_when_inode_is_unknown() -> None:
    # ss output without -e: no inode, but `timer:(timewait,59sec,0)` marks an orphan.
    sockets = [
        sock("FIN-WAIT-2", f"127.0.0.1:{39000 + i}", "127.0.0.1:12345", timer=TimerKind.TIME_WAIT)
        for i in range(50)
    ]
    assert diagnose(snapshot(sockets)) == []
