"""The command line, driven through click's CliRunner: exact output and exit codes.

The diagnosis is replaced by a stub that returns hand-built findings, so these tests pin the
CLI's own behaviour (formats, filters, exit codes, errors) whatever the rules find."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import tcphealth.pipeline
from tcphealth.cli import main
from tcphealth.diagnose import config as diagnose_config
from tcphealth.model import Finding, Severity, Snapshot, TcpState
from tcphealth.sources.snapshot_file import snapshot_to_json
from tests.scenario_helpers import finding, leak_finding, leak_snapshot

ESCAPE = re.compile(r"\x1b")
TCP_STATE_NAMES = {state.value for state in TcpState}
Diagnosis = Callable[..., list[Finding]]


@pytest.fixture(autouse=True)
def _no_config_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tcphealth.toml in the working directory or /etc must not change these results."""
    monkeypatch.setattr(diagnose_config, "SEARCH_PATHS", (), raising=False)


@pytest.fixture
def findings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Finding]]:
    """The findings the stub diagnosis returns; a test fills the list."""
    planted: list[Finding] = []

    def stub(snapshot: Snapshot, thresholds: object = None) -> list[Finding]:
        return list(planted)

    monkeypatch.setattr(tcphealth.pipeline, "diagnose", stub)
    yield planted


@pytest.fixture
def leak_file(tmp_path: Path) -> Path:
    path = tmp_path / "leak.json"
    path.write_text(snapshot_to_json(leak_snapshot()), encoding="utf-8")
    return path


def run(*args: str | Path, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(
        main, [str(arg) for arg in args], env=env, input=stdin, catch_exceptions=False
    )


# --- the default report ---


def test_default_report_piped_is_plain_lines(leak_file: Path, findings: list[Finding]) -> None:
    findings.append(leak_finding())
    result = run("--from", leak_file)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("CRITICAL code=close-wait-leak state=CLOSE_WAIT count=3 pid=812")
    assert lines[1:] == [
        "CLOSE_WAIT count=3 local=10.0.0.5:* remote=10.20.0.15:5432 peers=1 recv_q=1 send_q=0 "
        "backlog=- pid=812 process=java user=app age_s=- netns=- container=- pod=- unaccepted=0",
        "LISTEN count=1 local=0.0.0.0:8080 remote=0.0.0.0:0 peers=1 recv_q=0 send_q=0 "
        "backlog=100 pid=812 process=java user=app age_s=- netns=- container=- pod=- unaccepted=0",
        "LISTEN count=1 local=0.0.0.0:22 remote=0.0.0.0:0 peers=1 recv_q=0 send_q=0 "
        "backlog=128 pid=611 process=sshd user=root age_s=- netns=- container=- pod=- unaccepted=0",
        "TIME_WAIT count=1 local=10.0.0.5:80 remote=192.0.2.40:* peers=1 recv_q=0 send_q=0 "
        "backlog=- pid=- process=- user=- age_s=- netns=- container=- pod=- unaccepted=0",
    ]
    assert result.stderr == ""
    assert not ESCAPE.search(result.stdout)


def test_default_report_exits_0_even_with_findings(
    leak_file: Path, findings: list[Finding]
) -> None:
    findings.append(leak_finding())
    assert run("--from", leak_file, "--format", "table").exit_code == 0


@pytest.mark.parametrize("command", [[], ["sockets"], ["check"]])
@pytest.mark.parametrize("fmt", ["table", "plain", "json", "ndjson"])
def test_every_command_in_every_format(
    leak_file: Path, findings: list[Finding], command: list[str], fmt: str
) -> None:
    findings.append(leak_finding(Severity.WARNING))
    result = run(*command, "--from", leak_file, "--format", fmt, env={"COLUMNS": "100"})
    assert result.exit_code == (1 if command == ["check"] else 0)
    out = result.stdout
    assert not ESCAPE.search(out)  # no colour: stdout is not a terminal
    if fmt == "json":
        assert json.loads(out)["format"] == "tcphealth.report"
    elif fmt == "ndjson":
        assert all("type" in json.loads(line) for line in out.splitlines())
    elif fmt == "table":
        assert out.startswith("web-1  kernel 6.1.0  source procfs  2024-05-01 12:00:00 UTC\n")
    else:
        first = out.splitlines()[0]
        assert first.split()[0] in ("WARNING", "LISTEN")


def test_table_width_follows_columns(leak_file: Path, findings: list[Finding]) -> None:
    findings.append(leak_finding())
    wide = run("--from", leak_file, "--format", "table", env={"COLUMNS": "200"}).stdout
    narrow = run("--from", leak_file, "--format", "table", env={"COLUMNS": "60"}).stdout
    assert max(map(len, wide.splitlines())) > 80
    assert max(map(len, narrow.splitlines())) <= 60


def test_all_and_sockets_options(leak_file: Path, findings: list[Finding]) -> None:
    summarised = run("--from", leak_file, "--format", "table").stdout
    assert "2 processes with nothing wrong hold 5 sockets" in summarised
    everything = run("--from", leak_file, "--format", "table", "--all").stdout
    assert "pid 611 sshd  user root  1 socket" in everything
    with_sockets = run("--from", leak_file, "--sockets").stdout.splitlines()
    assert with_sockets[-1].startswith("TIME_WAIT local=10.0.0.5:80 remote=192.0.2.40:49200 ")


def test_notes_go_to_stderr(tmp_path: Path, findings: list[Finding]) -> None:
    from dataclasses import replace

    path = tmp_path / "noted.json"
    noted = replace(leak_snapshot(), notes=("2 row(s) listed a socket a second time",))
    path.write_text(snapshot_to_json(noted), encoding="utf-8")
    result = run("--from", path)
    assert result.stderr == "tcphealth: note: 2 row(s) listed a socket a second time\n"
    assert "second time" not in result.stdout


def test_stdin_snapshot(findings: list[Finding]) -> None:
    result = run("sockets", "--from", "-", stdin=snapshot_to_json(leak_snapshot()))
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 6


# --- sockets ---


def test_sockets_plain_prints_every_socket_and_table_limits(
    leak_file: Path, findings: list[Finding]
) -> None:
    assert len(run("sockets", "--from", leak_file).stdout.splitlines()) == 6
    limited = run("sockets", "--from", leak_file, "--format", "table", "--limit", "2").stdout
    assert "4 more sockets not shown" in limited
    assert len(run("sockets", "--from", leak_file, "--limit", "2").stdout.splitlines()) == 2


# --- filters ---


@pytest.mark.parametrize(
    ("args", "expected_states"),
    [
        (["--state", "close-wait"], ["CLOSE_WAIT"] * 3),
        (["--state", "CLOSE_WAIT", "--state", "time-wait"], ["CLOSE_WAIT"] * 3 + ["TIME_WAIT"]),
        (["--state", "LISTENING"], ["LISTEN", "LISTEN"]),
        (["--port", "22"], ["LISTEN"]),
        (["--pid", "812", "--state", "listen"], ["LISTEN"]),
        (["--process", "ss*"], ["LISTEN"]),
        (["--remote", "10.20.0.0/16"], ["CLOSE_WAIT"] * 3),
        (["--local", "0.0.0.0"], ["LISTEN", "LISTEN"]),
        (["-6"], []),
        (["-4"], ["LISTEN", "CLOSE_WAIT", "CLOSE_WAIT", "CLOSE_WAIT", "LISTEN", "TIME_WAIT"]),
    ],
)
def test_filters_on_the_command_line(
    leak_file: Path, findings: list[Finding], args: list[str], expected_states: list[str]
) -> None:
    result = run("sockets", "--from", leak_file, *args)
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == expected_states


def test_filters_apply_to_the_report_and_its_findings(
    leak_file: Path, findings: list[Finding]
) -> None:
    findings.extend([leak_finding(), finding("tw", Severity.WARNING, None, pid=611)])
    result = run("--from", leak_file, "--format", "json", "--state", "CLOSE_WAIT", "--pid", "812")
    document = json.loads(result.stdout)
    assert document["filters"] == ["state=CLOSE_WAIT", "pid=812"]
    assert document["summary"]["sockets"] == 3
    assert [f["code"] for f in document["findings"]] == ["close-wait-leak"]
    table = run("--from", leak_file, "--format", "table", "--state", "close-wait").stdout
    assert "filtered: state=CLOSE_WAIT" in table


@pytest.mark.parametrize("command", [[], ["sockets"]])
@pytest.mark.parametrize("fmt", ["plain", "json"])
def test_a_filter_that_matches_nothing_says_so_on_stderr_when_piped(
    leak_file: Path, command: list[str], fmt: str
) -> None:
    """Piped, an empty selection prints no record; the reason goes to stderr, not silence."""
    result = run(*command, "--from", leak_file, "--format", fmt, "--pid", "999999")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == ["tcphealth: note: no socket matched --pid 999999"]
    quiet = run(*command, "--quiet", "--from", leak_file, "--format", fmt, "--pid", "999999")
    assert quiet.stderr == ""
    # A table says it on screen; and a selection that matched says nothing on stderr.
    table = run(*command, "--from", leak_file, "--format", "table", "--pid", "999999")
    assert "no socket matched" not in table.stderr
    matched = run(*command, "--from", leak_file, "--format", fmt, "--pid", "812")
    assert matched.stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--state", "BOGUS"], "'BOGUS' is not a TCP state"),
        (["--local", "10.0.0.300"], "'10.0.0.300' is not an IP address or a CIDR network"),
        (["--port", "70000"], "70000 is not a port (0 to 65535)"),
        (["--format", "xml"], "'xml' is not one of"),
    ],
)
@pytest.mark.parametrize("command", [[], ["sockets"], ["check"]])
def test_bad_option_values_are_usage_errors_with_exit_3(
    leak_file: Path, findings: list[Finding], command: list[str], args: list[str], message: str
) -> None:
    result = run(*command, "--from", leak_file, *args)
    assert result.exit_code == 3
    assert message in result.stderr
    assert result.stdout == ""


def test_options_before_a_command_name_are_refused(leak_file: Path) -> None:
    result = run("--from", leak_file, "check")
    assert result.exit_code == 3
    assert "write them after the command name: tcphealth check [OPTIONS]" in result.stderr


# --- check ---


@pytest.mark.parametrize(
    ("severities", "fail_on", "code"),
    [
        ((), "warning", 0),
        ((Severity.INFO,), "warning", 0),
        ((Severity.INFO,), "info", 1),
        ((Severity.WARNING,), "warning", 1),
        ((Severity.WARNING,), "critical", 0),
        ((Severity.CRITICAL, Severity.WARNING), "warning", 2),
        ((Severity.CRITICAL,), "CRITICAL", 2),
    ],
)
def test_check_exit_code(
    leak_file: Path,
    findings: list[Finding],
    severities: tuple[Severity, ...],
    fail_on: str,
    code: int,
) -> None:
    findings.extend(finding(f"f{i}", severity) for i, severity in enumerate(severities))
    result = run("check", "--from", leak_file, "--fail-on", fail_on)
    assert result.exit_code == code
    assert result.stderr.endswith(f"(--fail-on {fail_on.lower()}): exit {code}\n")
    assert len(result.stdout.splitlines()) == len(severities)


def test_check_status_line_on_stderr(leak_file: Path, findings: list[Finding]) -> None:
    findings.extend([leak_finding(), finding("w", Severity.WARNING)])
    result = run("check", "--from", leak_file)
    assert result.stderr == (
        "tcphealth: check: 1 critical, 1 warning, 0 info (--fail-on warning): exit 2\n"
    )
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["CRITICAL", "WARNING"]


def test_check_nagios_line(leak_file: Path, findings: list[Finding]) -> None:
    findings.extend([leak_finding(), finding("w", Severity.WARNING, summary="A | B\nC.")])
    result = run("check", "--from", leak_file, "--nagios")
    assert result.exit_code == 2
    assert result.stdout == (
        "TCPHEALTH CRITICAL - 1 critical, 1 warning: close-wait-leak: "
        "java read the peer's FIN but never closed 3 connections. | "
        "established=0;;; syn_sent=0;;; syn_recv=0;;; fin_wait1=0;;; fin_wait2=0;;; "
        "time_wait=1;;; close=0;;; close_wait=3;;; last_ack=0;;; listen=2;;; closing=0;;;\n"
    )


def test_check_nagios_ok_and_below_fail_on(leak_file: Path, findings: list[Finding]) -> None:
    ok = run("check", "--from", leak_file, "--nagios")
    assert ok.exit_code == 0
    assert ok.stdout.startswith("TCPHEALTH OK - no findings in 6 sockets | established=0;;; ")
    findings.append(finding("w", Severity.WARNING, summary="Pipes | and\nnewlines."))
    below = run("check", "--from", leak_file, "--nagios", "--fail-on", "critical")
    assert below.exit_code == 0
    head, _, _ = below.stdout.partition(" | ")
    assert head == ("TCPHEALTH OK - 1 warning: w: Pipes / and newlines. (below --fail-on critical)")


# --- unreadable input ---


@pytest.mark.parametrize("command", [[], ["sockets"], ["check"], ["snapshot"]])
def test_missing_file_is_one_line_on_stderr_and_exit_3(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "nope.json"
    result = run(*command, "--from", missing)
    assert result.exit_code == 3
    assert result.stderr == f"tcphealth: {missing}: No such file or directory\n"
    assert result.stdout == ""
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "something else"}', "not a tcphealth snapshot"),
        ('{"format": "tcphealth.snapshot", "version": 99, "snapshot": {}}', "newer than"),
    ],
)
def test_unreadable_snapshot_is_exit_3(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    result = run("check", "--from", path)
    assert result.exit_code == 3
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"tcphealth: {path}")
    assert problem in result.stderr


def test_unreadable_input_with_nagios_prints_unknown(tmp_path: Path) -> None:
    result = run("check", "--nagios", "--from", tmp_path / "nope.json")
    assert result.exit_code == 3
    assert (
        result.stdout
        == f"TCPHEALTH UNKNOWN - {tmp_path / 'nope.json'}: No such file or directory\n"
    )


def test_bad_config_is_one_line_naming_the_key_and_exit_3(leak_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "tcphealth.toml"
    config.write_text("[thresholds]\nclose_wait_warnin = 3\n", encoding="utf-8")
    for command in ([], ["sockets"], ["check"], ["config"]):
        from_args = [] if command == ["config"] else ["--from", str(leak_file)]
        result = run(*command, *from_args, "--config", config)
        assert result.exit_code == 3
        assert result.stderr.startswith(
            f"tcphealth: {config}: thresholds.close_wait_warnin: unknown key (did you mean "
            "close_wait_warning? known: "
        )
        assert len(result.stderr.splitlines()) == 1
        assert result.stdout == ""
    # A name like none of them gets the list alone.
    config.write_text("[thresholds]\nbanana = 3\n", encoding="utf-8")
    result = run("config", "--config", config)
    assert result.stderr.startswith(f"tcphealth: {config}: thresholds.banana: unknown key (known: ")


def test_missing_config_file_is_exit_3(leak_file: Path, tmp_path: Path) -> None:
    result = run("check", "--from", leak_file, "--config", tmp_path / "none.toml")
    assert result.exit_code == 3
    assert result.stderr.startswith(f"tcphealth: {tmp_path / 'none.toml'}: cannot read")


# --- snapshot ---


def test_snapshot_writes_the_filtered_snapshot(leak_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = run("snapshot", "--from", leak_file, "--state", "TIME_WAIT", "-o", out)
    assert result.exit_code == 0
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert [s["state"] for s in saved["snapshot"]["sockets"]] == ["TIME_WAIT"]
    assert saved["snapshot"]["processes"] == []


def test_snapshot_that_cannot_be_written_is_exit_3(leak_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "missing-directory" / "out.json"
    result = run("snapshot", "--from", leak_file, "-o", target)
    assert result.exit_code == 3
    assert result.stderr == f"tcphealth: cannot write {target}: No such file or directory\n"


def test_snapshot_round_trips_to_stdout(leak_file: Path) -> None:
    result = run("snapshot", "--from", leak_file)
    assert result.stdout == leak_file.read_text(encoding="utf-8")


# --- the live host ---


def test_live_host_plain_and_json() -> None:
    plain = CliRunner().invoke(main, [])
    assert plain.exit_code == 0, plain.output
    assert not ESCAPE.search(plain.stdout)
    for line in plain.stdout.splitlines():  # every record says what it is first
        assert line.split()[0] in {"CRITICAL", "WARNING", "INFO", *TCP_STATE_NAMES}
    result = CliRunner().invoke(main, ["sockets", "--format", "json", "--limit", "5"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert len(document["sockets"]) <= 5
    assert document["host"]["source"] in ("netlink", "procfs", "psutil")


# --- the real diagnosis on the fixtures ---

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE_VERDICTS = {
    "healthy": (0, []),
    "close-wait-leak": (1, ["close-wait-not-closed"]),
    "listener-not-accepting": (2, ["listen-queue-full", "close-wait-unaccepted"]),
    "time-wait-port-exhaustion": (2, ["time-wait-ports-exhausting"]),
    "time-wait-buckets": (2, ["time-wait-bucket-limit"]),
    "half-close-fin-wait2": (1, ["fin-wait2-held"]),
    "syn-sent-unanswered": (1, ["syn-sent-unanswered"]),
    "fd-limit": (2, ["fd-limit-near"]),
}


@pytest.mark.parametrize(("name", "verdict"), sorted(FIXTURE_VERDICTS.items()))
def test_check_on_each_fixture(name: str, verdict: tuple[int, list[str]]) -> None:
    code, codes = verdict
    result = run("check", "--from", FIXTURES / f"{name}.json", "--format", "plain")
    assert result.exit_code == code
    assert [line.split()[1].removeprefix("code=") for line in result.stdout.splitlines()] == codes


def test_thresholds_from_the_config_file_apply(tmp_path: Path) -> None:
    leak = FIXTURES / "close-wait-leak.json"
    config = tmp_path / "tcphealth.toml"
    config.write_text(
        "[thresholds]\nclose_wait_warning = 300\nclose_wait_critical = 1000\n", encoding="utf-8"
    )
    assert run("check", "--from", leak).exit_code == 1
    assert run("check", "--from", leak, "--config", config).exit_code == 0
    config.write_text("[thresholds]\nclose_wait_critical = 200\n", encoding="utf-8")
    assert run("check", "--from", leak, "--config", config).exit_code == 2


def test_grep_close_wait_on_the_leak_fixture() -> None:
    """The script user: `tcphealth --from fixtures/close-wait-leak.json | grep CLOSE_WAIT`."""
    out = run("--from", FIXTURES / "close-wait-leak.json").stdout
    matching = [line for line in out.splitlines() if "CLOSE_WAIT" in line]
    assert matching[0].startswith(
        "WARNING code=close-wait-not-closed state=CLOSE_WAIT count=240 pid=812 pids=812 "
        "process=java "
    )
    assert matching[1:] == [
        "CLOSE_WAIT count=240 local=10.0.0.5:* remote=10.20.0.15:5432 peers=1 recv_q=0 "
        "send_q=0 backlog=- pid=812 process=java user=app age_s=- netns=- container=- pod=- "
        "unaccepted=0"
    ]


# --- explain ---


@pytest.mark.parametrize("spelling", ["close-wait", "CLOSE_WAIT", "CLOSE-WAIT", " closewait "])
def test_explain_any_spelling(spelling: str) -> None:
    result = run("explain", spelling, "--from", FIXTURES / "healthy.json")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "CLOSE_WAIT (also written CLOSE-WAIT (ss))"
    assert lines[1].startswith("  What it is: ")
    assert any(line.startswith("  How long here: No timer and no sysctl") for line in lines)
    assert all(len(line) <= 88 for line in lines)


def test_explain_uses_the_snapshot_sysctls(tmp_path: Path) -> None:
    from dataclasses import replace

    from tcphealth.model import Sysctls

    path = tmp_path / "s.json"
    path.write_text(
        snapshot_to_json(replace(leak_snapshot(), sysctls=Sysctls(tcp_syn_retries=3))),
        encoding="utf-8",
    )
    document = json.loads(run("explain", "SYN-SENT", "--from", path, "--format", "json").stdout)
    assert document["format"] == "tcphealth.explanation"
    assert document["state"] == "SYN_SENT"
    assert document["limit_seconds"] == 15.0
    assert document["settings"] == {"tcp_syn_retries": "3"}
    assert document["assumed"] == []


@pytest.mark.parametrize("text", ["bogus", "UNKNOWN", "ESTABLISHEDX"])
def test_explain_unknown_state_is_one_line_and_exit_3(text: str) -> None:
    result = run("explain", text)
    assert result.exit_code == 3
    assert result.stderr.startswith(f"tcphealth: not a TCP state: '{text}' (one of ESTABLISHED, ")
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def test_explain_needs_a_state() -> None:
    result = run("explain")
    assert result.exit_code == 3
    assert result.stderr == "tcphealth: explain needs a STATE (e.g. close-wait), or --codes\n"


# --- config ---


def test_config_prints_the_defaults_as_toml_read_back_identically(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tomllib

    from tcphealth.diagnose.config import Thresholds

    absent = (tmp_path / "tcphealth.toml", tmp_path / "etc.toml")
    monkeypatch.setattr(diagnose_config, "SEARCH_PATHS", absent)
    result = run("config")
    assert result.exit_code == 0
    first, _, body = result.stdout.partition("\n")
    assert first == f"# tcphealth thresholds: defaults (no {absent[0]} or {absent[1]})"
    assert tomllib.loads(body)["thresholds"] == dataclasses.asdict(Thresholds())


def test_config_file_found_by_the_search(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    found = tmp_path / "tcphealth.toml"
    found.write_text("[thresholds]\nfd_warning_ratio = 0.5\n", encoding="utf-8")
    monkeypatch.setattr(diagnose_config, "SEARCH_PATHS", (found,))
    result = run("config")
    assert result.stdout.splitlines()[0] == f"# tcphealth thresholds: from {found}"
    assert "\nfd_warning_ratio = 0.5\n" in result.stdout


def test_config_shows_the_file_values(tmp_path: Path) -> None:
    config = tmp_path / "t.toml"
    config.write_text("[thresholds]\nclose_wait_warning = 42\n", encoding="utf-8")
    result = run("config", "--config", config)
    assert result.stdout.splitlines()[0] == f"# tcphealth thresholds: from {config}"
    assert "\nclose_wait_warning = 42\n" in result.stdout
    document = json.loads(run("config", "--config", config, "--format", "json").stdout)
    assert (document["source"], document["close_wait_warning"]) == (str(config), 42)


# --- a closed pipe ---


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["sockets", "--from", "fixtures/time-wait-buckets.json"], 141),
        (["--from", "fixtures/time-wait-buckets.json", "--format", "json", "--sockets"], 141),
        (["check", "--from", "fixtures/listener-not-accepting.json"], 2),
        (["snapshot", "--from", "fixtures/time-wait-buckets.json"], 141),
    ],
)
def test_a_reader_that_goes_away_ends_the_run_quietly(args: list[str], code: int) -> None:
    """`tcphealth sockets | head -1`: no traceback; check still answers with its verdict."""
    import subprocess
    import sys

    with subprocess.Popen(
        [sys.executable, "-m", "tcphealth", *args],
        cwd=FIXTURES.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        child.stdout.close()  # before the child writes anything
        errors = child.stderr.read().decode()
        assert child.wait(timeout=120) == code
    assert "Traceback" not in errors and "BrokenPipe" not in errors


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["sockets", "--from", "fixtures/time-wait-buckets.json", "--format", "plain"], 0),
        (["--from", "fixtures/close-wait-leak.json", "--format", "json", "--sockets"], 0),
        (["check", "--from", "fixtures/listener-not-accepting.json", "--format", "plain"], 2),
        (["--from", "fixtures/missing.json"], 3),
    ],
)
def test_the_console_script_leaves_at_once_with_everything_said(
    args: list[str], code: int, tmp_path: Path
) -> None:
    """run() exits without tearing down: the output written to a file is the whole of it,
    byte for byte what main() writes, and the status is main's."""
    import subprocess
    import sys

    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        status = subprocess.run(
            [sys.executable, "-m", "tcphealth", *args],
            cwd=FIXTURES.parent,
            stdout=stdout,
            stderr=stderr,
            timeout=120,
            check=False,
        ).returncode
    in_process = CliRunner().invoke(main, args, catch_exceptions=False)
    assert (status, in_process.exit_code) == (code, code)
    assert out.read_text() == in_process.stdout
    assert err.read_text() == in_process.stderr
    assert len(out.read_bytes()) > 0 or code == 3


def test_exit_statuses_are_those_of_sys_exit(capsys: pytest.CaptureFixture[str]) -> None:
    from tcphealth.cli import _exit_status

    assert [_exit_status(code) for code in (None, 0, 1, 2, 3, 141, 256 + 2)] == [
        0,
        0,
        1,
        2,
        3,
        141,
        2,
    ]
    assert _exit_status("tcphealth: gone") == 1
    assert capsys.readouterr().err == "tcphealth: gone\n"


# --- pasted text, namespaces ---

REALWORLD = FIXTURES / "realworld"


def test_pasted_ss_output_is_diagnosed() -> None:
    paste = REALWORLD / "moooofly-lls_k8s-node2_ss_synrecv-closewait_accept-queue-129of128.txt"
    result = run("check", "--from", paste, "--format", "plain")
    assert result.exit_code == 2
    assert result.stdout.splitlines()[0].startswith("CRITICAL code=listen-queue-full ")
    table = run("--from", paste, "--format", "table", env={"COLUMNS": "100"}).stdout
    assert "the source's summary also counts (not listed): CLOSE_WAIT 577," in table
    document = json.loads(run("--from", paste, "--format", "json").stdout)
    assert document["summary"]["reported_states"]["CLOSE_WAIT"] == 577


def test_addresses_cut_short_by_netstat_are_marked() -> None:
    paste = REALWORLD / "jc_macos-10.14.6_netstat-An_closewait_truncated-ports.txt"
    lines = run("sockets", "--from", paste).stdout.splitlines()
    assert len(lines) == 49
    assert sum(" truncated=yes " in line for line in lines) == 46
    assert sum(" truncated=no " in line for line in lines) == 3
    document = json.loads(run("--from", paste, "--format", "json").stdout)
    assert document["summary"]["truncated_sockets"] == 46
    table = run("--from", paste, "--format", "table").stdout
    assert "46 sockets printed with an address cut short by the tool" in table


def test_input_format_forces_the_reader(tmp_path: Path) -> None:
    paste = REALWORLD / "moooofly-lls_k8s-node2_ss_synrecv-closewait_accept-queue-129of128.txt"
    result = run("check", "--from", paste, "--input-format", "snapshot")
    assert result.exit_code == 3
    assert result.stderr.startswith(f"tcphealth: {paste}")
    assert len(result.stderr.splitlines()) == 1


def test_strict_refuses_a_row_it_cannot_read(tmp_path: Path) -> None:
    copy = tmp_path / "tcp.txt"
    copy.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode\n"
        "   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0"
        "        0 12345 1 0000000000000000 100 0 0 10 0\n"
        "   1: this is not a row\n",
        encoding="utf-8",
    )
    lenient = run("sockets", "--from", copy, "--input-format", "proc")
    assert lenient.exit_code == 0
    assert lenient.stdout.startswith("LISTEN local=127.0.0.1:22 ")
    assert "line skipped" in lenient.stderr
    strict = run("sockets", "--from", copy, "--input-format", "proc", "--strict")
    assert strict.exit_code == 3
    assert strict.stderr.startswith(f"tcphealth: {copy}:3: ")
    assert len(strict.stderr.splitlines()) == 1


def test_netns_with_from_names_a_namespace_the_snapshot_does_not_hold(leak_file: Path) -> None:
    # With --from, --netns selects a namespace of the snapshot; this one records none.
    result = run("--netns", "lab", "--from", leak_file)
    assert result.exit_code == 3
    assert f"--netns lab: no such network namespace in {leak_file} (it holds: none)" in (
        result.stderr
    )


def test_an_unknown_netns_is_one_line_and_exit_3() -> None:
    result = run("check", "--netns", "tcphealth-no-such-namespace")
    assert result.exit_code == 3
    assert result.stderr.startswith("tcphealth: /run/netns/tcphealth-no-such-namespace: ")
    assert len(result.stderr.splitlines()) == 1


def _host_with_an_ownerless_listener(tmp_path: Path) -> tuple[Path, str]:
    """A saved snapshot of an owned connection on :5000 and a listener on :2024 whose owner
    was not seen, with the collector's note about it; and that note as stderr prints it."""
    from tcphealth.model import Attribution, OwnerSource
    from tcphealth.phrases import unseen_owner_note
    from tests import builders

    owned = builders.sock("ESTAB", "10.0.0.1:5000", "10.0.0.2:40000", pids=(7,), inode=11)
    ownerless = builders.sock("LISTEN", "0.0.0.0:2024", None, inode=12, owner=OwnerSource.UNSEEN)
    whole = dataclasses.replace(
        builders.snapshot(
            owned,
            ownerless,
            attribution=Attribution(attempted=True, processes_scanned=1, sockets_unseen=1),
        ),
        notes=(unseen_owner_note(1),),
    )
    path = tmp_path / "host.json"
    path.write_text(snapshot_to_json(whole), encoding="utf-8")
    return path, f"tcphealth: note: {unseen_owner_note(1)}"


def test_the_ownerless_note_on_stderr_is_about_the_sockets_shown(tmp_path: Path) -> None:
    path, note = _host_with_an_ownerless_listener(tmp_path)
    assert note in run("--from", path).stderr.splitlines()
    assert note in run("--from", path, "--port", "2024").stderr.splitlines()
    filtered = run("--from", path, "--port", "5000")
    assert filtered.exit_code == 0
    assert "local=10.0.0.1:5000 " in filtered.stdout  # the owned socket is shown, and
    assert "held by no process" not in filtered.stderr  # the note about :2024 is gone


@pytest.mark.parametrize(
    "command",
    [["watch", "--count", "1"], ["metrics"], ["snapshot"], ["check", "--fail-on", "critical"]],
)
def test_every_command_notes_the_ownerless_sockets_its_filter_kept(
    tmp_path: Path, command: list[str]
) -> None:
    # Before, watch, metrics and snapshot printed the collector's note for the whole host,
    # about a listener on :2024 that `--port 5000` left out; snapshot also saved it.
    path, note = _host_with_an_ownerless_listener(tmp_path)
    for port, noted in (("2024", True), ("5000", False)):
        saved = tmp_path / f"saved-{port}.json"
        output = ["-o", str(saved)] if command == ["snapshot"] else []
        result = run(*command, "--from", path, "--port", port, *output)
        assert result.exit_code == 0, result.stderr
        assert (note in result.stderr.splitlines()) is noted, result.stderr
        if output:
            notes = json.loads(saved.read_text(encoding="utf-8"))["snapshot"]["notes"]
            assert (note.removeprefix("tcphealth: note: ") in notes) is noted
            assert f"wrote a snapshot (1 socket in the last) to {saved}" in result.stderr
