"""Diagnosis with time (issue 8): following connections across samples, the verdicts only a
series can give, and series files replayed with the same verdicts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tcphealth import sources
from tcphealth.cli import main
from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.rules.close_wait import SLOW_CLOSE
from tcphealth.diagnose.rules.handshake import SYN_SENT_STUCK
from tcphealth.diagnose.rules.over_time import GROWING, LISTEN_OVERFLOWS_RISING, PAST_TIMER
from tcphealth.diagnose.series import diagnose_series
from tcphealth.diagnose.timeline import Tracker, connection_key, kernel_age_floor
from tcphealth.model import (
    Finding,
    HostInfo,
    OwnerSource,
    Snapshot,
    Socket,
    Sysctls,
    TcpInfo,
    TcpState,
    TimerKind,
)
from tcphealth.pipeline import analyse_series
from tcphealth.sources.snapshot_file import (
    read_snapshots,
    series_to_json,
    snapshot_to_json,
    write_series,
)
from tests.builders import process, snapshot, sock

SERIES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "series"


def at(base: Snapshot, seconds: float) -> Snapshot:
    """``base`` as if taken ``seconds`` after 2024-05-01 12:00:00 UTC."""
    host: HostInfo = dataclasses.replace(base.host, taken_at=1714564800.0 + seconds)
    return dataclasses.replace(base, host=host)


def close_wait(port: int, *, pid: int = 700, inode: int | None = None) -> Socket:
    return sock(
        "CLOSE-WAIT",
        f"10.0.0.5:{port}",
        "10.20.0.15:5432",
        pids=(pid,),
        recv_queue=1,
        inode=inode if inode is not None else 50000 + port,
    )


def codes(findings: list[Finding]) -> list[str]:
    return [finding.code for finding in findings]


def evidence(finding: Finding, name: str) -> object:
    return next(item.value for item in finding.evidence if item.name == name)


# --- following a connection ---------------------------------------------------------------------


def test_the_cookie_recognises_a_socket_before_the_inode_and_the_endpoints() -> None:
    with_cookie = sock("ESTAB", "10.0.0.5:40000", "10.0.0.6:80", inode=7, cookie=99)
    with_inode = sock("ESTAB", "10.0.0.5:40000", "10.0.0.6:80", inode=7)
    orphan = sock("TIME-WAIT", "10.0.0.5:40000", "10.0.0.6:80", inode=0)
    assert connection_key(with_cookie) == ("cookie", 99)
    assert connection_key(with_inode) == ("inode", 7, with_inode.local, with_inode.remote)
    assert connection_key(orphan) == ("endpoints", orphan.local, orphan.remote)
    # Two different sockets on the same four-tuple with different inodes stay apart.
    other = sock("ESTAB", "10.0.0.5:40000", "10.0.0.6:80", inode=8)
    assert connection_key(other) != connection_key(with_inode)


def test_ages_grow_while_the_state_holds_and_restart_when_it_changes() -> None:
    tracker = Tracker()
    established = sock("ESTAB", "10.0.0.5:40000", "10.0.0.6:80", pids=(1,), inode=11)
    closing = dataclasses.replace(established, state=TcpState.CLOSE_WAIT)
    key = connection_key(established)
    first = tracker.observe(at(snapshot(established), 0))[key]
    assert (first.first_seen, first.observed_seconds, first.samples) == (1714564800.0, 0.0, 1)
    second = tracker.observe(at(snapshot(established), 2.5))[key]
    assert (second.observed_seconds, second.samples) == (2.5, 2)
    third = tracker.observe(at(snapshot(closing), 5))[key]
    assert (third.first_seen, third.observed_seconds, third.samples) == (1714564805.0, 0.0, 1)
    # Gone from a sample, forgotten: back later, it starts again.
    tracker.observe(at(snapshot(), 7))
    assert tracker.observe(at(snapshot(closing), 9))[key].samples == 1


@pytest.mark.parametrize(
    ("state", "floor"),
    [("CLOSE-WAIT", 3.228), ("ESTAB", 3.228), ("FIN-WAIT-2", 3.228), ("LAST-ACK", None)],
)
def test_the_kernel_floor_is_the_time_since_the_last_ack_in_states_entered_on_one(
    state: str, floor: float | None
) -> None:
    info = TcpInfo(last_data_recv_ms=5228, last_ack_recv_ms=3228)
    assert kernel_age_floor(sock(state, "10.0.0.5:1", "10.0.0.6:2", tcp_info=info)) == floor


def test_the_age_at_least_takes_the_larger_of_observation_and_kernel_floor() -> None:
    info = TcpInfo(last_ack_recv_ms=90_000)
    held = sock("CLOSE-WAIT", "10.0.0.5:1", "10.0.0.6:2", pids=(3,), inode=5, tcp_info=info)
    tracker = Tracker()
    tracker.observe(at(snapshot(held), 0))
    age = tracker.observe(at(snapshot(held), 10))[connection_key(held)]
    assert (age.observed_seconds, age.at_least_seconds) == (10.0, 90.0)


# --- verdicts from time --------------------------------------------------------------------------


def test_close_wait_that_stays_is_a_leak_with_how_long_it_stayed() -> None:
    sockets = [close_wait(41000 + i) for i in range(12)]
    series = [at(snapshot(*sockets, processes=[process(700, "api")]), t) for t in (0, 5, 10)]
    # Ten seconds is past a slow close only for a closer known to take less.
    findings, facts = diagnose_series(series, Thresholds(close_wait_leak_seconds=10))
    assert codes(findings) == ["close-wait-not-reading"]
    assert evidence(findings[0], "stayed") == 12
    assert evidence(findings[0], "replaced_ratio") == 0.0
    assert evidence(findings[0], "oldest_at_least_s") == 10.0
    assert (
        "12 of them stayed through the whole 10.0 s across 3 samples, the oldest in CLOSE_WAIT "
        "at least 10 s: a leak, not a slow close." in findings[0].summary
    )
    assert findings[0].unchecked == ()
    assert facts.samples == 3 and facts.window_seconds == 10.0


def test_close_wait_that_stays_through_a_short_window_is_not_yet_called_a_leak() -> None:
    # The same 10 s, with slow closes allowed a minute: staying 10 s proves nothing yet.
    sockets = [close_wait(41000 + i) for i in range(12)]
    series = [at(snapshot(*sockets, processes=[process(700, "api")]), t) for t in (0, 5, 10)]
    findings, _ = diagnose_series(series)
    assert codes(findings) == ["close-wait-not-reading"]
    assert evidence(findings[0], "stayed") == 12
    assert "leak" not in findings[0].summary
    assert findings[0].unchecked == (
        "whether this is a leak or an application slow to close: the oldest has been in "
        "CLOSE_WAIT at least 10.0 s, under 60 s, so follow them for longer than 60 s (tcphealth "
        "check --samples 4 --interval 20, or tcphealth watch)",
    )


def test_close_wait_replaced_every_sample_is_a_slow_close_one_level_lower() -> None:
    series = [
        at(snapshot(*[close_wait(41000 + 100 * t + i) for i in range(12)]), t * 5) for t in range(3)
    ]
    single = diagnose_series(series[-1:])[0]
    assert [(f.code, f.severity.label) for f in single] == [("close-wait-not-reading", "WARNING")]
    findings, _ = diagnose_series(series)
    assert [(f.code, f.severity.label, f.count) for f in findings] == [(SLOW_CLOSE, "INFO", 12)]
    assert evidence(findings[0], "stayed") == 0
    assert evidence(findings[0], "replaced_ratio") == 1.0
    assert "not a leak" in findings[0].summary


def test_half_replaced_close_wait_is_still_a_leak() -> None:
    kept = [close_wait(41000 + i) for i in range(10)]
    series = [
        at(snapshot(*kept, *[close_wait(42000 + 100 * t + i) for i in range(10)]), t * 5)
        for t in range(3)
    ]
    findings, _ = diagnose_series(series)
    assert codes(findings) == ["close-wait-not-reading"]
    assert evidence(findings[0], "stayed") == 10
    assert evidence(findings[0], "replaced_ratio") == 0.5


def test_close_wait_living_longer_than_an_interval_but_closed_within_the_window_is_slow() -> None:
    # Each socket is seen in two samples 4 s apart and closed before the third (about 6 s of
    # CLOSE_WAIT): one in three is replaced between two samples, all are between first and last.
    batches = [[close_wait(41000 + 100 * b + i) for i in range(5)] for b in range(4)]
    series = [
        at(snapshot(*batches[t], *batches[t + 1], processes=[process(700, "api")]), t * 4)
        for t in range(3)
    ]
    findings, _ = diagnose_series(series)
    assert [(f.code, f.severity.label, f.count) for f in findings] == [(SLOW_CLOSE, "INFO", 10)]
    assert evidence(findings[0], "stayed") == 0
    assert evidence(findings[0], "replaced_ratio") == 0.5
    assert evidence(findings[0], "gone_by_last") == 1.0
    assert "100% of those in the first sample were closed by the last" in findings[0].summary
    # Two samples are not enough to say the first sample's sockets were closed over a window.
    two, _ = diagnose_series(series[:2])
    assert codes(two) == ["close-wait-not-reading"]


def syn_sent(port: int, remote: str = "198.51.100.7:443") -> Socket:
    return sock("SYN-SENT", f"10.0.0.5:{port}", remote, pids=(900,), inode=60000 + port)


def test_syn_sent_in_three_samples_is_stuck_and_replaces_the_unconfirmed_finding() -> None:
    stuck = syn_sent(51000)
    series = [at(snapshot(stuck, processes=[process(900, "curl")]), t) for t in (0, 1, 2)]
    assert codes(diagnose_series(series[-1:])[0]) == ["syn-sent-unconfirmed"]
    findings, _ = diagnose_series(series)
    assert [(f.code, f.severity.label, f.subject.endpoint, f.subject.pid) for f in findings] == [
        (SYN_SENT_STUCK, "WARNING", "198.51.100.7:443", 900)
    ]
    assert evidence(findings[0], "oldest_s") == 2.0
    assert evidence(findings[0], "syn_retry_budget_s") == 127  # tcp_syn_retries 6 assumed


def test_syn_sent_that_came_and_went_is_a_blip() -> None:
    series = [
        at(snapshot(syn_sent(51000 + t)), t)  # a new attempt in each sample
        for t in range(3)
    ]
    findings, _ = diagnose_series(series)
    assert SYN_SENT_STUCK not in codes(findings)


def test_two_samples_are_too_few_to_call_a_syn_sent_stuck() -> None:
    stuck = syn_sent(51000)
    findings, _ = diagnose_series([at(snapshot(stuck), 0), at(snapshot(stuck), 1)])
    assert codes(findings) == ["syn-sent-unconfirmed"]
    # ... unless the threshold says two are enough.
    two = Thresholds(persist_samples=2)
    findings, _ = diagnose_series([at(snapshot(stuck), 0), at(snapshot(stuck), 1)], two)
    assert codes(findings) == [SYN_SENT_STUCK]


def test_an_orphaned_fin_wait2_seen_past_tcp_fin_timeout_is_flagged() -> None:
    orphan = sock(
        "FIN-WAIT-2", "10.0.0.5:45000", "198.51.100.9:443", inode=0, owner=OwnerSource.NONE
    )
    sysctls = Sysctls(tcp_fin_timeout=30)
    series = [at(snapshot(orphan, sysctls=sysctls), t) for t in (0, 20, 40)]
    findings, _ = diagnose_series(series)
    assert [(f.code, f.state, f.count) for f in findings] == [(PAST_TIMER, TcpState.FIN_WAIT2, 1)]
    assert evidence(findings[0], "timer_s") == 30.0
    # Within the timer (plus a margin for sampling) nothing is said.
    findings, _ = diagnose_series(series[:2])
    assert PAST_TIMER not in codes(findings)
    # A FIN_WAIT2 the application holds has no timer at all: never past it.
    held = sock("FIN-WAIT-2", "10.0.0.5:45001", "198.51.100.9:443", pids=(5,), inode=77)
    findings, _ = diagnose_series([at(snapshot(held, sysctls=sysctls), t) for t in (0, 40, 80)])
    assert PAST_TIMER not in codes(findings)


def test_listen_overflows_that_rose_during_the_window_are_a_warning() -> None:
    listener = sock("LISTEN", "0.0.0.0:8000", pids=(5,), inode=3, recv_queue=0, listen_backlog=128)
    series = [
        at(snapshot(listener, counters={"TcpExt.ListenOverflows": 100 + 30 * t}), 10 * t)
        for t in range(3)
    ]
    findings, facts = diagnose_series(series)
    assert codes(findings) == [LISTEN_OVERFLOWS_RISING]
    assert findings[0].count == 60
    assert [(d.name, d.delta, d.per_second) for d in facts.counter_deltas] == [
        ("TcpExt.ListenOverflows", 60, 3.0)
    ]
    # A counter that went down was reset: no delta, no rising finding; what is left is the
    # latest sample's own count since boot, said as that.
    reset = [series[0], at(snapshot(listener, counters={"TcpExt.ListenOverflows": 5}), 10)]
    findings, facts = diagnose_series(reset)
    assert (codes(findings), facts.counter_deltas) == (["listen-overflowed"], ())
    assert evidence(findings[0], "ListenOverflows") == 5


def test_a_process_whose_count_rises_in_every_sample_is_growing() -> None:
    series = [
        at(
            snapshot(
                *[
                    sock("ESTAB", f"10.0.0.5:{40000 + i}", "10.0.0.9:5432", pids=(44,), inode=i + 1)
                    for i in range(5 + 20 * t)
                ],
                processes=[process(44, "pooler")],
            ),
            10 * t,
        )
        for t in range(3)
    ]
    findings, facts = diagnose_series(series)
    assert [(f.code, f.subject.pid, f.state, f.count) for f in findings] == [
        (GROWING, 44, TcpState.ESTABLISHED, 45)
    ]
    assert evidence(findings[0], "growth_per_min") == 120.0
    assert [(g.pid, g.first, g.last, g.steady) for g in facts.growth] == [(44, 5, 45, True)]


def test_one_sample_gives_the_snapshot_verdicts_unchanged() -> None:
    sockets = [close_wait(41000 + i) for i in range(12)]
    single = at(snapshot(*sockets), 0)
    findings, facts = diagnose_series([single])
    assert [f.evidence for f in findings] == [f.evidence for f in diagnose_series([single])[0]]
    assert "stayed" not in [item.name for item in findings[0].evidence]
    assert facts.samples == 1


# --- the series fixtures and the command line ----------------------------------------------------


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("name", "exit_code", "first"),
    [
        ("close-wait-leak", 1, ("WARNING", "close-wait-not-reading", 2200)),
        ("close-wait-slow-close", 0, ("INFO", SLOW_CLOSE, 2200)),
        ("syn-sent-stuck", 1, ("WARNING", SYN_SENT_STUCK, 2800)),
        ("listen-overflows-rising", 1, ("WARNING", LISTEN_OVERFLOWS_RISING, None)),
    ],
)
def test_check_replays_a_series_file_with_time_verdicts(
    name: str, exit_code: int, first: tuple[str, str, int | None]
) -> None:
    code, out, err = run("check", "--from", SERIES_DIR / f"{name}.json", "--format", "json")
    assert code == exit_code
    document = json.loads(out)
    top = document["findings"][0]
    assert (top["severity"], top["code"], top["pid"]) == first
    assert document["series"]["samples"] == 3
    assert document["series"]["window_seconds"] == 20.0
    assert f"exit {exit_code}" in err


def test_the_same_series_gives_the_same_verdicts_live_and_replayed(tmp_path: Path) -> None:
    series = read_snapshots(SERIES_DIR / "close-wait-leak.json")
    direct = analyse_series(series)
    path = tmp_path / "again.json"
    write_series(series, path)
    assert path.read_text(encoding="utf-8") == series_to_json(series)
    replayed = analyse_series(read_snapshots(path))
    assert replayed.findings == direct.findings
    assert read_snapshots(path) == series


def test_the_leak_series_says_how_long_and_how_fast_in_plain_lines() -> None:
    code, out, _ = run("--from", SERIES_DIR / "close-wait-leak.json")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("WARNING code=close-wait-not-reading state=CLOSE_WAIT count=90 ")
    assert "stayed=60 (of 90 present in all 3 samples (20.0 s))" in lines[0]
    assert "growth_per_min=90.0 (60 -> 90 in 20.0 s)" in lines[0]
    assert lines[1] == (
        "SERIES samples=3 window_s=20 started=2024-05-01T12:00:00Z ended=2024-05-01T12:00:20Z "
        'counters=- growth="pid 2200 CLOSE_WAIT 60->90 (+90.0/min)"'
    )
    assert (
        "CLOSE_WAIT count=90 local=10.0.0.30:* remote=10.20.0.40:6379 peers=1 recv_q=1 send_q=0 "
        "backlog=- pid=2200 process=api-worker user=api age_s=20 netns=- container=- pod=- "
        "unaccepted=0"
    ) in lines


def test_a_series_file_of_one_sample_per_line_loads_and_a_snapshot_file_is_a_series_of_one(
    tmp_path: Path,
) -> None:
    text = (SERIES_DIR / "syn-sent-stuck.json").read_text(encoding="utf-8")
    assert text.startswith('{"format": "tcphealth.series", "version": 1, "samples": [\n')
    assert len(text.splitlines()) == 1 + 3 + 1
    single = read_snapshots(SERIES_DIR.parent / "healthy.json")
    assert len(single) == 1


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"format": "tcphealth.series", "version": 2, "samples": []},
            "series version 2 is newer than this tcphealth reads (up to 1); upgrade tcphealth",
        ),
        (
            {"format": "tcphealth.series", "version": 1, "samples": []},
            '"samples" must be a non-empty list of snapshots',
        ),
        ({"format": "tcphealth.series", "version": "1"}, '"version" must be a positive integer'),
    ],
)
def test_a_bad_series_file_is_one_line_and_exit_3(
    tmp_path: Path, document: dict[str, object], message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    code, out, err = run("check", "--from", path)
    assert (code, out) == (3, "")
    assert err == f"tcphealth: {path}: {message}\n"


def test_samples_out_of_order_are_refused(tmp_path: Path) -> None:
    samples = read_snapshots(SERIES_DIR / "close-wait-leak.json")
    path = tmp_path / "shuffled.json"
    path.write_text(series_to_json([samples[1], samples[0]]), encoding="utf-8")
    code, _, err = run("check", "--from", path)
    assert code == 3
    assert err == f"tcphealth: {path}: the samples are not in the order they were taken\n"


def test_a_bad_sample_is_named_by_its_number(tmp_path: Path) -> None:
    samples = read_snapshots(SERIES_DIR / "close-wait-leak.json")
    text = series_to_json(samples).replace('"hostname":"api-1"', '"hostname":5', 1)
    path = tmp_path / "typed.json"
    path.write_text(text, encoding="utf-8")
    code, _, err = run("check", "--from", path)
    assert code == 3
    assert err.startswith(f"tcphealth: {path}: sample 1: ")
    assert "hostname" in err


def test_samples_with_from_is_a_usage_error() -> None:
    code, _, err = run("check", "--from", SERIES_DIR / "close-wait-leak.json", "--samples", "3")
    assert code == 3
    assert "--samples looks at this host again and again" in err


def test_snapshot_of_a_series_file_keeps_the_latest_with_a_note(tmp_path: Path) -> None:
    out_path = tmp_path / "latest.json"
    code, _, err = run("snapshot", "--from", SERIES_DIR / "close-wait-leak.json", "-o", out_path)
    assert code == 0
    assert "a series of 3 samples; only the latest is used here" in err
    latest = sources.load(out_path)
    assert latest.host.taken_at == 1714564820.0


def test_watch_replays_a_series_file_as_one_ndjson_record_per_sample() -> None:
    code, out, err = run(
        "watch", "--from", SERIES_DIR / "close-wait-leak.json", "--format", "ndjson"
    )
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["type"], r["sample"], r["series"]["samples"]) for r in records] == [
        ("sample", 1, 1),
        ("sample", 2, 2),
        ("sample", 3, 3),
    ]
    assert [r["summary"]["states"]["CLOSE_WAIT"] for r in records] == [60, 75, 90]
    assert records[-1]["findings"][0]["code"] == "close-wait-not-reading"
    assert err.splitlines()[-1] == (
        "tcphealth: watch: 3 samples over 20.0 s; in the last: 0 critical, 1 warning, "
        "0 info (close-wait-not-reading)"
    )


def test_watch_takes_samples_as_the_top_level_command_does() -> None:
    # `tcphealth --samples N` and `tcphealth watch --samples N`: one word for one idea.
    series = SERIES_DIR / "close-wait-leak.json"
    by_count = run("watch", "--from", series, "--count", "2", "--format", "plain")
    by_samples = run("watch", "--from", series, "--samples", "2", "--format", "plain")
    assert by_samples == by_count
    code, out, err = by_samples
    assert code == 0
    assert out.splitlines()[-1].endswith(" sample=2")
    assert err.splitlines()[-1].startswith("tcphealth: watch: 2 samples over 10.0 s;")


def test_watch_plain_lines_end_with_their_sample_number() -> None:
    code, out, _ = run("watch", "--from", SERIES_DIR / "syn-sent-stuck.json", "--state", "syn-sent")
    assert code == 0
    lines = out.splitlines()
    assert all(line.rsplit(" ", 1)[-1].startswith("sample=") for line in lines)
    stuck = [line for line in lines if line.startswith("WARNING code=syn-sent-stuck")]
    assert len(stuck) == 1 and stuck[0].endswith(" sample=3")


def test_the_snapshot_writer_is_unchanged_for_a_single_snapshot() -> None:
    # The series header wraps whole snapshot documents; a lone snapshot keeps its own format.
    snap = read_snapshots(SERIES_DIR.parent / "healthy.json")[0]
    assert snapshot_to_json(snap) == (SERIES_DIR.parent / "healthy.json").read_text("utf-8")


# --- claims about time in other rules (issue 21) ------------------------------------------------


def fin_wait2(port: int, *, pid: int = 710) -> Socket:
    return sock("FIN-WAIT-2", f"10.0.0.5:{port}", "10.20.0.16:873", pids=(pid,), inode=60000 + port)


def zero_window(port: int, *, probing: bool = True) -> Socket:
    return sock(
        "ESTAB",
        f"10.0.0.5:{port}",
        "10.20.0.17:9000",
        pids=(720,),
        inode=61000 + port,
        send_queue=100_000,
        timer=TimerKind.ZERO_WINDOW_PROBE if probing else None,
    )


@pytest.mark.parametrize(("stuck", "claimed"), [(10.0, True), (60.0, False)])
def test_held_fin_wait2_is_said_to_wait_for_peers_that_never_close_only_once_it_has_lasted(
    stuck: float, claimed: bool
) -> None:
    sockets = [fin_wait2(42000 + i) for i in range(12)]
    series = [at(snapshot(*sockets, processes=[process(710, "rsync")]), t) for t in (0, 5, 10)]
    (finding,) = diagnose_series(series, Thresholds(stuck_seconds=stuck))[0]
    assert finding.code == "fin-wait2-held"
    assert evidence(finding, "oldest_at_least_s") == 10.0
    assert ("these peers do not close" in finding.summary) is claimed
    questions = [i for i in finding.unchecked if i.startswith("whether these peers ever close")]
    assert len(questions) == (0 if claimed else 1)


def test_a_zero_window_counts_only_the_unbroken_stretch_up_to_the_latest_sample() -> None:
    """Closed at 0, open at 5, closed again at 10 and 20: it has lasted 10 s, not 20."""
    looks = [(0, True), (5, False), (10, True), (20, True)]
    series = [
        at(snapshot(*(zero_window(43000 + i, probing=closed) for i in range(3))), t)
        for t, closed in looks
    ]
    (finding,) = diagnose_series(series, Thresholds(stuck_seconds=15))[0]
    assert finding.code == "established-peer-not-reading"
    assert evidence(finding, "lasted_at_least_s") == 10.0
    assert "stopped" not in finding.summary
    (finding,) = diagnose_series(series, Thresholds(stuck_seconds=10))[0]
    assert finding.summary.endswith(
        "The same connections stayed closed for at least 10 s: the reader has stopped reading them."
    )
    assert finding.unchecked == ()


def test_the_facts_of_several_namespaces_add_up_to_the_host_s() -> None:
    from tcphealth.series_facts import CounterDelta, Growth, SeriesFacts, combine

    def facts(
        history: list[tuple[float, dict[TcpState, int]]],
        overflows: int,
        growth: tuple[Growth, ...] = (),
    ) -> SeriesFacts:
        return SeriesFacts(
            samples=len(history),
            started_at=history[0][0],
            ended_at=history[-1][0],
            state_history=tuple(history),
            counter_deltas=(
                CounterDelta("TcpExt.ListenOverflows", overflows, overflows / 10, "m"),
            ),
            growth=growth,
            ages={},
        )

    host = facts([(100.0, {TcpState.ESTABLISHED: 3}), (110.0, {TcpState.ESTABLISHED: 4})], 2)
    grows = Growth(812, "java", TcpState.CLOSE_WAIT, 10, 30, 120.0, True)
    pod = facts(
        [(100.0, {TcpState.CLOSE_WAIT: 10}), (110.0, {TcpState.CLOSE_WAIT: 30})], 5, (grows,)
    )
    # A namespace that appeared with the last sample: one look, no rise of its own.
    late = SeriesFacts(1, 110.0, 110.0, ((110.0, {TcpState.LISTEN: 1}),), (), (), {})
    whole = combine([host, pod, late])
    assert whole.state_history == (
        (100.0, {TcpState.ESTABLISHED: 3, TcpState.CLOSE_WAIT: 10}),
        (110.0, {TcpState.ESTABLISHED: 4, TcpState.CLOSE_WAIT: 30, TcpState.LISTEN: 1}),
    )
    (overflows,) = whole.counter_deltas
    assert (overflows.delta, overflows.per_second) == (7, 0.7)
    assert whole.growth == (grows,)
    assert (whole.samples, whole.window_seconds) == (2, 10.0)
    assert combine([host]) is host


def test_held_since_carries_an_unbroken_stretch_and_starts_again_after_a_break() -> None:
    from tcphealth.diagnose.timeline import ConnectionKey, HeldSince

    held = HeldSince()
    since: dict[ConnectionKey, float]
    # Look at t=10: the window shows the condition since 8 (its own start).
    since = {"a": 8.0, "b": 9.0}
    held.extend("unread", since, [], previous_at=5.0, latest_at=10.0)
    assert since == {"a": 8.0, "b": 9.0}  # nothing remembered yet
    # Look at t=15: the window (15 back to 12) is shorter than the stretch; the look at 10
    # saw it, so "a" keeps its start at 8. "b" broke (dropped) and is forgotten.
    held.forget_before(10.0)
    since = {"a": 12.0}
    held.extend("unread", since, ["b"], previous_at=10.0, latest_at=15.0)
    assert since == {"a": 8.0}
    # "b" shows it again at t=20: it starts over from what the window shows.
    held.forget_before(15.0)
    since = {"a": 17.0, "b": 19.0}
    held.extend("unread", since, [], previous_at=15.0, latest_at=20.0)
    assert since == {"a": 8.0, "b": 19.0}
    # A look that asked nothing about "a" (no finding) breaks what is known of it.
    held.forget_before(20.0)
    held.extend("unread", {}, [], previous_at=20.0, latest_at=25.0)
    held.forget_before(25.0)
    since = {"a": 27.0}
    held.extend("unread", since, [], previous_at=25.0, latest_at=30.0)
    assert since == {"a": 27.0}
    # Conditions are kept apart.
    since = {"a": 29.0}
    held.extend("zero-window", since, [], previous_at=25.0, latest_at=30.0)
    assert since == {"a": 29.0}
