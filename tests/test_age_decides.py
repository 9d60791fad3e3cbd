"""A few CLOSE_WAIT (or held FIN_WAIT2) below the warning count, whose age decides (issue 22).

Neither state has a timer, so one look at a few cannot tell a moment before close() from a
leak. Pasted, they have no age: tcphealth says so (close-wait-age-decides, INFO), names the
holder, and its verdict says "nothing over the thresholds; N sockets whose age decides" -- not
"no problems found", and the holder is not listed as having nothing wrong. The three pastes
are real (fixtures/realworld/threads); the live scene is tests/test_live_age_decides.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tcphealth.cli import main
from tcphealth.filters import SocketFilter
from tcphealth.model import Finding, Severity, Snapshot, Socket, SubjectKind, TcpInfo
from tcphealth.pipeline import analyse, analyse_series
from tests.builders import many, process, snapshot, sock

THREADS = Path(__file__).resolve().parent.parent / "fixtures" / "realworld" / "threads"


def paste(name: str) -> Path:
    path = THREADS / name
    assert path.is_file(), path  # a missing fixture must not pass
    return path


def check_json(path: Path) -> tuple[int, list[dict[str, Any]]]:
    result = CliRunner().invoke(main, ["check", "--from", str(path), "--format", "json"])
    return result.exit_code, json.loads(result.stdout)["findings"]


def summary_json(path: Path) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["--from", str(path), "--format", "json"])
    summary: dict[str, Any] = json.loads(result.stdout)["summary"]
    return summary


def table(path: Path) -> list[str]:
    result = CliRunner().invoke(
        main, ["--from", str(path), "--format", "table"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


@pytest.mark.parametrize(
    ("name", "count", "pid", "subject"),
    [
        # one lsof row: java holds a CLOSE_WAIT on localhost:ddi-tcp-1
        (
            "github-jetty-2169_lsof-quoted-service-name-masked-user_closewait-30k.txt",
            1,
            22664,
            "pid 22664 (java)",
        ),
        # two lsof rows by dotnet (one with the state split as 'CLOSE _WAIT')
        (
            "github-quickbooks-160_lsof-tid-column-masked-hostnames-split-state_closewait-sdk.txt",
            2,
            21799,
            "pid 21799 (dotnet)",
        ),
        # six macOS netstat rows on :8080, no owner: about the server port
        (
            "github-srs-636_macos-netstat-tcp4-dotted-ports_closewait-stuck-http-stream.txt",
            6,
            None,
            "127.0.0.1:8080",
        ),
    ],
)
def test_a_pasted_few_close_wait_are_not_nothing_wrong(
    name: str, count: int, pid: int | None, subject: str
) -> None:
    path = paste(name)
    code, findings = check_json(path)
    assert code == 0  # INFO: below the warning, so CI does not fail on it
    (finding,) = findings
    assert (finding["code"], finding["severity"], finding["state"], finding["blame"]) == (
        "close-wait-age-decides",
        "INFO",
        "CLOSE_WAIT",
        "local-application",
    )
    assert (finding["count"], finding["pid"]) == (count, pid)
    evidence = {item["name"]: item["value"] for item in finding["evidence"]}
    assert evidence["age_unknown"] == count
    assert evidence["close_wait_warning"] == 10
    summary = str(finding["summary"])
    assert "below the 10 that warn" in summary
    assert "no timer ends CLOSE_WAIT, only the application's close()" in summary
    assert "a moment before close(), or a leak" in summary
    (unchecked, *_) = finding["unchecked"]
    assert "a second look after 60 s settles it" in unchecked
    steps = finding["next_steps"]
    assert isinstance(steps, list)
    if "macos" in name:  # a macOS paste: its own netstat and lsof look again
        assert steps[0].startswith('netstat -an -p tcp | awk \'$6 == "CLOSE_WAIT"')
        assert steps[1].startswith("lsof -nP -iTCP:8080 -sTCP:CLOSE_WAIT")
    else:
        assert steps[0].startswith("ss -tnpo state close-wait")
        assert steps[1].startswith("tcphealth check --samples 4 --interval 20")
    # The JSON summary counts what the verdict line says.
    assert summary_json(path)["age_decides"] == count

    lines = table(path)
    noun = "socket" if count == 1 else "sockets"
    verdict = f"Verdict: nothing over the thresholds; {count} {noun} whose age decides (1 info)"
    assert verdict in lines
    assert f"  INFO close-wait-age-decides  {subject}  {count} {noun}" in lines
    assert not any("no problems found" in line for line in lines)
    assert not any("with nothing wrong" in line for line in lines)


def test_ownerless_server_ends_are_about_their_server_port() -> None:
    # (client ends without an owner are about the host: test_diagnose_close_wait)
    (finding,) = check_json(
        paste("github-srs-636_macos-netstat-tcp4-dotted-ports_closewait-stuck-http-stream.txt")
    )[1]
    assert finding["subject"] == {
        "kind": "listener",
        "pid": None,
        "pids": [],
        "process": None,
        "endpoint": "127.0.0.1:8080",
    }
    assert finding["next_steps"][0].startswith(  # a macOS paste: its own netstat, on :8080
        "netstat -an -p tcp | awk '$6 == \"CLOSE_WAIT\" && $4 ~ /[.]8080$/'"
    )


def test_held_fin_wait2_pasted_without_age_is_info_about_the_half_closer() -> None:
    # kubernetes#17641: four FIN_WAIT2 held by kube-proxy, and tcp_fin_timeout 60 beside them
    code, findings = check_json(
        paste("github-kubernetes-17641_netstat-tpn-grep-sysctl_finwait2-kube-proxy-half-close.txt")
    )
    assert code == 0
    (finding,) = findings
    assert (finding["code"], finding["severity"], finding["pid"], finding["count"]) == (
        "fin-wait2-age-decides",
        "INFO",
        14125,
        4,
    )
    assert "(tcp_fin_timeout is for orphans only)" in str(finding["summary"])


# --- the same sockets, the same verdict: one look, a filter, a series -----------------------------


def held(count: int, age_ms: int | None) -> list[Socket]:
    info = None if age_ms is None else TcpInfo(last_ack_recv_ms=age_ms)
    return many(
        count,
        lambda i: sock(
            "CLOSE-WAIT",
            f"10.0.0.1:{40000 + i}",
            "10.0.0.5:5432",
            pids=(812,),
            recv_queue=1,
            inode=1000 + i,
            tcp_info=info,
        ),
    )


def at(snap: Snapshot, seconds: float) -> Snapshot:
    return dataclasses.replace(snap, host=dataclasses.replace(snap.host, taken_at=seconds))


def codes(findings: list[Finding]) -> list[str]:
    return [f.code for f in findings]


def test_young_by_tcp_info_is_quiet_in_one_look_a_filter_and_a_series() -> None:
    snap = snapshot(held(3, 2_000), processes=[process(812, "java")])
    assert analyse(snap).findings == ()
    assert analyse(snap, SocketFilter(ports=frozenset({5432}))).findings == ()
    assert analyse_series([at(snap, 0.0), at(snap, 3.0)]).findings == ()


def test_lasting_by_tcp_info_is_info_in_one_look_a_filter_and_a_series() -> None:
    snap = snapshot(held(3, 600_000), processes=[process(812, "java")])
    one = analyse(snap).findings
    filtered = analyse(snap, SocketFilter(ports=frozenset({5432}))).findings
    series = analyse_series([at(snap, 0.0), at(snap, 3.0)]).findings
    for findings in (one, filtered, series):
        (finding,) = findings
        assert (finding.code, finding.severity, finding.subject.pid) == (
            "close-wait-age-decides",
            Severity.INFO,
            812,
        )
        assert {e.name: e.value for e in finding.evidence}["lasting"] == 3


def test_a_series_tells_an_ageless_few_lasting_once_it_has_seen_them_long_enough() -> None:
    snap = snapshot(held(2, None), processes=[process(812, "java")])
    short = analyse_series([at(snap, 0.0), at(snap, 3.0)]).findings
    long = analyse_series([at(snap, 0.0), at(snap, 70.0)]).findings
    (unknown,) = short
    (lasted,) = long
    assert codes([unknown, lasted]) == ["close-wait-age-decides"] * 2
    # 3 s seen is only a floor: still unknown, and the finding still says what would tell.
    assert {e.name: e.value for e in unknown.evidence}["age_unknown"] == 2
    assert unknown.unchecked
    # 70 s seen in CLOSE_WAIT: past the 60 s of a slow close.
    evidence = {e.name: e.value for e in lasted.evidence}
    assert (evidence["lasting"], evidence["oldest_at_least_s"]) == (2, 70.0)
    assert "age_unknown" not in evidence and not lasted.unchecked
    assert "waited at least 70 s, past the 60 s a slow close explains" in lasted.summary


def test_the_holder_is_never_listed_as_having_nothing_wrong() -> None:
    report = analyse(snapshot(held(2, None), processes=[process(812, "java")]))
    assert [owner.pid for owner in report.processes if not owner.findings] == []
    assert report.age_decides == 2
    assert report.findings[0].subject.kind is SubjectKind.PROCESS
