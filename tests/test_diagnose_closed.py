"""Sockets in CLOSE kept by a process (issue #22, zoulasc/blocklist#37), and next steps that fit
the platform a paste says it comes from. The kernel-as-oracle test is test_live_closed.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.diagnose.config import ConfigError, Thresholds, parse_thresholds, thresholds_as_toml
from tcphealth.model import (
    Blame,
    Finding,
    ReportedCount,
    Severity,
    Snapshot,
    Socket,
    SubjectKind,
    TcpState,
)
from tcphealth.sources.snapshot_file import snapshot_from_json
from tcphealth.sources.text import read_text
from tests.builders import listener, many, process, snapshot, sock

REPO = Path(__file__).resolve().parent.parent
BLOCKLIST = (
    REPO
    / "fixtures/realworld/threads"
    / "github-blocklist-37_freebsd-netstat-grep-closed-wc-indented_close-62254-fd-kept.txt"
)
LUMBERJACK = (
    REPO
    / "fixtures/realworld/threads"
    / "github-logstash-3459_freebsd-netstat-Lan-queue-sonewconn_listen-76-over-50-lumberjack.txt"
)
PID = 4242


def closed(count: int, pids: tuple[int, ...] = (PID,)) -> list[Socket]:
    """``count`` sockets in CLOSE on 127.0.0.1, each bound to its own port."""
    return many(
        count, lambda i: sock(TcpState.CLOSE, f"127.0.0.1:{20000 + i}", "0.0.0.0:*", pids=pids)
    )


def of_code(findings: list[Finding], code: str) -> list[Finding]:
    return [finding for finding in findings if finding.code == code]


FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def on(platform: str | None, snap: Snapshot) -> Snapshot:
    return replace(snap, host=replace(snap.host, platform=platform))


def counted(snap: Snapshot, *counts: ReportedCount) -> Snapshot:
    return replace(snap, reported=counts)


# --- held rows ---------------------------------------------------------------------------------


def test_a_pile_held_by_one_process_is_a_critical_descriptor_leak() -> None:
    (finding,) = of_code(
        diagnose(snapshot(closed(1000), processes=[process(PID, "blocklistd")])), "close-held"
    )
    assert finding.severity is Severity.CRITICAL
    assert finding.state is TcpState.CLOSE
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.subject.pids == (PID,)
    assert finding.count == 1000
    assert "blocklistd" in finding.summary and "descriptor leak" in finding.summary
    # On Linux the rows are a floor: sockets whose connect() picked their port are unlisted.
    assert any("descriptor count is the measure" in text for text in finding.unchecked)
    assert (
        f"ls -l /proc/{PID}/fd | grep -c socket   # every socket it holds, listed or not"
        in finding.next_steps
    )


def test_warning_from_close_held_warning() -> None:
    (finding,) = of_code(diagnose(snapshot(closed(100))), "close-held")
    assert finding.severity is Severity.WARNING
    assert finding.count == 100


def test_near_miss_below_the_threshold_says_nothing() -> None:
    assert of_code(diagnose(snapshot(closed(99))), "close-held") == []


def test_the_threshold_is_the_configured_one() -> None:
    thresholds = replace(Thresholds(), close_held_warning=5, close_held_critical=10)
    (finding,) = of_code(diagnose(snapshot(closed(6)), thresholds), "close-held")
    assert finding.severity is Severity.WARNING


def test_critical_when_they_alone_take_most_of_the_descriptor_limit() -> None:
    snap = snapshot(closed(150), processes=[process(PID, "daemon", soft_limit=180)])
    (finding,) = of_code(diagnose(snap), "close-held")
    # 150 is below close_held_critical (1000), but 150/180 is past fd_warning_ratio (0.8).
    assert finding.severity is Severity.CRITICAL
    assert {e.name: e.value for e in finding.evidence}["fd_soft_limit"] == 180
    assert "EMFILE" in finding.summary


def test_a_roomy_limit_leaves_the_count_to_decide() -> None:
    snap = snapshot(closed(150), processes=[process(PID, "daemon", soft_limit=65536)])
    (finding,) = of_code(diagnose(snap), "close-held")
    assert finding.severity is Severity.WARNING


def test_piles_are_per_holder() -> None:
    snap = snapshot(
        closed(60, (1,)), many(60, lambda i: sock("CLOSE", f"127.0.0.1:{30000 + i}", pids=(2,)))
    )
    # 120 in all, but no process holds 100.
    assert of_code(diagnose(snap), "close-held") == []


def test_near_miss_close_without_an_owner_warns_at_most_and_says_what_is_missing() -> None:
    (finding,) = of_code(diagnose(snapshot(closed(5000, ()))), "close-held")
    assert finding.severity is Severity.WARNING
    assert finding.subject.kind is SubjectKind.HOST
    assert finding.subject.pids == ()
    assert any(text.startswith("which process holds them") for text in finding.unchecked)


def test_few_unowned_say_nothing() -> None:
    assert of_code(diagnose(snapshot(closed(99, ()))), "close-held") == []


# --- a paste's own count -----------------------------------------------------------------------


def test_blocklist_37_the_pasted_count_is_a_warning_about_the_host() -> None:
    (snap,) = read_text(BLOCKLIST.read_text(encoding="utf-8"), str(BLOCKLIST))
    findings = diagnose(snap)
    assert [finding.code for finding in findings] == ["close-counted"]
    (finding,) = findings
    assert finding.severity is Severity.WARNING  # host-wide: no holder named
    assert finding.count == 62254
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert {e.name: e.value for e in finding.evidence}["paste_count"] == 62254
    assert any(text.startswith("which process holds them") for text in finding.unchecked)
    # "grep CLOSED" is BSD's word: the steps are BSD's and macOS's, none is ss or /proc.
    assert "netstat -an -p tcp | grep -c CLOSED" in finding.next_steps
    assert not any(
        step.startswith(("ss ", "ls ", "grep TCP /proc", "for p in /proc"))
        for step in finding.next_steps
    )


def count_of(sockets: int, selects: str | None = None, pids: tuple[int, ...] = ()) -> ReportedCount:
    return ReportedCount(
        state=TcpState.CLOSE,
        count=sockets,
        sockets=sockets,
        command="netstat -anp | grep CLOSE | wc -l",
        selects=selects,
        pids=pids,
    )


def test_a_count_selected_by_pid_is_one_holders_and_may_be_critical() -> None:
    snap = counted(
        snapshot(processes=[process(971, "blocklistd")]),
        count_of(2000, selects="pid=971", pids=(971,)),
    )
    (finding,) = of_code(diagnose(snap), "close-counted")
    assert finding.severity is Severity.CRITICAL
    assert finding.subject.pids == (971,)


def test_a_host_wide_count_is_a_warning_at_most() -> None:
    (finding,) = of_code(diagnose(counted(snapshot(), count_of(2000))), "close-counted")
    assert finding.severity is Severity.WARNING


def test_a_count_below_the_threshold_says_nothing() -> None:
    assert diagnose(counted(snapshot(), count_of(99))) == []


def test_a_count_the_listing_holds_is_left_to_the_rows() -> None:
    snap = counted(snapshot(closed(150)), count_of(150))
    assert [finding.code for finding in diagnose(snap)] == ["close-held"]


# --- configuration -----------------------------------------------------------------------------


def test_close_held_keys_are_shown_and_validated() -> None:
    text = thresholds_as_toml(Thresholds())
    assert "close_held_warning = 100\n" in text and "close_held_critical = 1000\n" in text
    assert (
        parse_thresholds("[thresholds]\nclose_held_warning = 7\n", origin="t").close_held_warning
        == 7
    )
    with pytest.raises(
        ConfigError, match=r"close_held_warning \(2000\) is above close_held_critical"
    ):
        parse_thresholds("[thresholds]\nclose_held_warning = 2000\n", origin="t")
    with pytest.raises(ConfigError, match="close_held_critical: must be a count"):
        parse_thresholds("[thresholds]\nclose_held_critical = 0\n", origin="t")


# --- next steps per platform -------------------------------------------------------------------


def full_listener(platform: str | None) -> list[Finding]:
    snap = on(platform, snapshot(listener("0.0.0.0:5043", queued=76, backlog=50, pids=(77,))))
    return of_code(diagnose(snap), "listen-queue-full")


def test_listen_queue_full_on_linux_offers_ss() -> None:
    (finding,) = full_listener("linux")
    assert (
        finding.next_steps[0]
        == "ss -ltnp 'sport = :5043'   # Recv-Q (waiting) against Send-Q (backlog)"
    )
    assert full_listener(None)[0].next_steps == finding.next_steps


def test_listen_queue_full_on_bsd_or_macos_offers_their_commands() -> None:
    for platform in ("darwin", "freebsd"):
        (finding,) = full_listener(platform)
        assert finding.next_steps[:4] == (
            "netstat -Lan -p tcp   # qlen (waiting) against maxqlen (backlog), per listener",
            "netstat -s -p tcp | grep -i listen   # dropped for a full queue: still rising?",
            "lsof -nP -iTCP:5043 -sTCP:LISTEN   # who owns it (macOS, and BSD with the lsof port)",
            "sockstat -46l -p 5043   # who owns it (FreeBSD)",
        )
        assert not any(
            step.startswith(("ss ", "nstat ", "strace ", "grep State /proc"))
            for step in finding.next_steps
        )


def test_the_freebsd_netstat_l_paste_gets_no_ss() -> None:
    (snap,) = read_text(LUMBERJACK.read_text(encoding="utf-8"), str(LUMBERJACK))
    (finding,) = of_code(diagnose(snap), "listen-queue-full")
    assert finding.next_steps[0].startswith("netstat -Lan -p tcp")
    assert not any(step.startswith("ss ") for step in finding.next_steps)


def test_windows_counts_get_powershell_and_netstat() -> None:
    snap = on(
        "windows",
        counted(
            snapshot(),
            ReportedCount(
                state=TcpState.TIME_WAIT,
                count=30000,
                sockets=30000,
                command="netstat -an | find /c TIME_WAIT",
            ),
        ),
    )
    (finding,) = of_code(diagnose(snap), "time-wait-counted")
    assert finding.next_steps[0].startswith(
        "Get-NetTCPConnection -State TimeWait | Group-Object RemoteAddress"
    )
    assert "netsh int ipv4 show dynamicport tcp   # the ephemeral port range" in finding.next_steps
    assert not any(step.startswith(("ss ", "sysctl net.")) for step in finding.next_steps)


def test_close_held_on_windows_and_bsd() -> None:
    (windows,) = of_code(diagnose(on("windows", snapshot(closed(200)))), "close-held")
    assert windows.next_steps[:2] == (
        "Get-NetTCPConnection -State Closed | Group-Object OwningProcess | "
        "Sort-Object Count -Descending | Select-Object -First 10 Count, Name",
        "netstat -ano | findstr CLOSED   # the last column is the pid",
    )
    assert windows.unchecked == ()  # the Linux floor is Linux's
    (bsd,) = of_code(diagnose(on("darwin", snapshot(closed(200)))), "close-held")
    assert bsd.next_steps[:2] == (
        f"lsof -nP -p {PID} -a -iTCP | grep -c CLOSED   # macOS",
        f"procstat -f {PID} | grep -c TCP   # FreeBSD",
    )


def test_a_rule_without_steps_for_the_platform_marks_its_linux_commands() -> None:
    # A zero window toward a peer (established.py gives Linux steps only) on a macOS paste.
    whole = snapshot_from_json(
        (FIXTURES / "peer-window-closed.json").read_text(encoding="utf-8"), "fixture"
    )
    snap = on("darwin", whole)
    (finding,) = of_code(diagnose(snap), "established-peer-not-reading")
    linux_only = [step for step in finding.next_steps if step.startswith("ss ")]
    assert linux_only
    assert all(step.endswith("# a Linux command: not on macOS or BSD") for step in linux_only)
    # The same from Linux is not marked.
    (linux,) = of_code(diagnose(on("linux", snap)), "established-peer-not-reading")
    assert not any("a Linux command" in step for step in linux.next_steps)
