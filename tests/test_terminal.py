"""At a terminal (issue #24): what a person sees on the screen, the pager, progress, Ctrl-C,
the man page and shell completion, and the small habits of a Unix tool.

The screens are real: tcphealth runs in a pseudo-terminal of 80x24 or 120x40 and its output
goes through a terminal emulator (pyte, :mod:`tests.terminal`); the tests read the rows."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tcphealth.cli import main, parse_ports
from tcphealth.manpage import page
from tcphealth.model import Snapshot, TcpState, state_asked_for
from tcphealth.pipeline import take_samples
from tcphealth.render.environment import Environment, choose_pager
from tcphealth.render.pager import fits, paged
from tcphealth.render.table import COMMENT_MARK, is_command
from tcphealth.sources.snapshot_file import series_to_json, write_snapshot
from tests.scenario_helpers import proc, snap, sock
from tests.terminal import ROOT, TCPHEALTH, emulate, run_in_terminal

# A real incident pasted from a public thread: 21 findings on one Kubernetes node.
K8S = (
    "fixtures/realworld/"
    "moooofly-lls_k8s-node_ss_kube-proxy-accept-queue-full_closewait-no-owner.txt"
)
SIZES = [(80, 24), (120, 40)]
VERDICT_ROW = re.compile(r"  (CRITICAL|WARNING|INFO) [a-z-]+  ")


def _findings(*args: str) -> list[dict[str, object]]:
    result = CliRunner().invoke(main, [*args, "--format", "json", "--quiet"])
    assert result.exit_code == 0, result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert isinstance(findings, list)
    return findings


def _less_waits(raw: bytes, columns: int, lines: int) -> bytes | None:
    """Press q once less shows its prompt (a ':' alone on the last row)."""
    screen, _ = emulate(raw, columns, lines)
    return b"q" if screen[-1].strip() == ":" else None


def _verdict_rows(rows: list[str]) -> list[str]:
    start = next(i for i, row in enumerate(rows) if row.startswith("Verdict: "))
    verdict: list[str] = []
    for row in rows[start + 1 :]:
        if not row or row.startswith("not shown at this height"):
            break
        verdict.append(row)
    return verdict


# --- the report: the verdict first, through the pager -------------------------------------------


@pytest.mark.skipif(shutil.which("less") is None, reason="less is the default pager (.ci/run)")
@pytest.mark.parametrize(("columns", "lines"), SIZES)
def test_the_report_opens_on_the_verdict_in_the_pager(columns: int, lines: int) -> None:
    run = run_in_terminal(
        ["--from", K8S, "--quiet"],
        columns,
        lines,
        answer=lambda raw: _less_waits(raw, columns, lines),
    )
    assert run.status == 0
    findings = _findings("--from", K8S)
    assert len(findings) == 21
    # The first screen: the header, then the verdict, one row per finding, worst first.
    assert run.screen[0].startswith("ip-172-1-57-200  source")
    assert run.visible("Verdict: 20 critical, 1 warning")
    verdict = _verdict_rows(run.screen)
    shown = [row for row in verdict if VERDICT_ROW.match(row)]
    assert shown, run.screen
    # No verdict row wrapped onto a second: every row is a finding or the count of the rest.
    for row in verdict:
        assert VERDICT_ROW.match(row) or re.fullmatch(r"  and \d+ more findings", row), row
    rest = re.search(r"and (\d+) more findings", "\n".join(verdict))
    assert len(shown) + (int(rest.group(1)) if rest else 0) == 21
    if lines == 40:
        assert len(shown) == 21  # room for all of them
    assert shown[0].startswith("  CRITICAL listen-queue-full  pid 1448 (kube-proxy)")
    assert "WARNING" not in " ".join(shown[:20])  # worst first


@pytest.mark.parametrize(("columns", "lines"), SIZES)
def test_no_next_step_command_is_broken_and_the_verdict_closes_the_report(
    columns: int, lines: int
) -> None:
    run = run_in_terminal(["--from", K8S, "--quiet", "--no-pager"], columns, lines)
    assert run.status == 0
    rows = run.transcript
    commands = {
        str(step).partition(COMMENT_MARK)[0]
        for finding in _findings("--from", K8S)
        for step in finding["next_steps"]  # type: ignore[attr-defined]
        if is_command(str(step))
    }
    assert len(commands) >= 5
    for command in commands:
        if 2 + 12 + len(command) <= columns:
            assert any(command in row for row in rows), command
    # The closing line, at the bottom of what stays on the screen.
    tail = "\n".join(row for row in run.screen if row)
    assert (
        "Verdict: 20 critical, 1 warning; worst: CRITICAL listen-queue-full"
        in tail.replace("\n", " ")
        or "Verdict: 20 critical, 1 warning; worst: CRITICAL listen-queue-full" in tail
    )


def test_a_command_longer_than_the_width_runs_past_it_rather_than_breaking() -> None:
    run = run_in_terminal(
        ["--from", "fixtures/close-wait-leak.json", "--quiet", "--no-pager"], 40, 24
    )
    # On the bytes written: the whole command on one line; its comment below it.
    text = run.raw.decode()
    assert "ss -tnpo state close-wait | grep -F 'pid=812,'\r\n" in text
    assert "ls -l /proc/812/fd | grep -c socket\r\n" in text
    assert "# descriptors held by" in text


@pytest.mark.parametrize(("columns", "lines"), SIZES)
def test_brief_is_the_verdict_on_one_screen(columns: int, lines: int) -> None:
    run = run_in_terminal(["--from", K8S, "--brief", "--quiet"], columns, lines)
    assert run.status == 0
    assert run.transcript[: len(run.screen)] == run.screen or len(run.transcript) <= lines
    assert run.screen[0].startswith("ip-172-1-57-200  source")
    verdict = _verdict_rows(run.screen)
    assert all(VERDICT_ROW.match(row) or "more findings" in row for row in verdict), verdict
    assert run.visible("tcphealth without --brief gives the detail")
    assert not any(row.startswith("  blame") for row in run.transcript)  # no detail


# --- watch ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("columns", "lines"), SIZES)
def test_watch_fits_the_terminal_and_says_what_it_left_out(columns: int, lines: int) -> None:
    run = run_in_terminal(["watch", "--from", K8S, "--quiet"], columns, lines)
    assert run.status == 0
    # The screen as it stood before the closing summary line went under it.
    frame, _ = emulate(run.raw.split(b"tcphealth: watch:")[0], columns, lines)
    used = [row for row in frame if row]
    assert frame[0].startswith("ip-172-1-57-200  source")  # the top did not scroll away
    assert any(row.startswith("sample 2 of a saved series") for row in frame)
    assert any(row.startswith("Verdict: 20 critical, 1 warning") for row in frame)
    last = used[-1]
    assert last.startswith("not shown at this height: the detail of ")
    assert "…" not in last
    # What is above that line is whole: a finding's summary sentence ends there, or the verdict.
    above = frame[frame.index(last) - 1]
    assert above.endswith(".") or VERDICT_ROW.match(above) or "more findings" in above, frame
    for row in _verdict_rows(frame):
        assert VERDICT_ROW.match(row) or "more findings" in row, row
    assert len(frame) == lines and frame.index(last) < lines - 1


# --- sockets: one row per socket ---------------------------------------------------------------


def _sockets_file(tmp_path: Path) -> Path:
    long_name = "postgres-checkpointer-for-the-orders-database"
    sockets = [
        sock("ESTABLISHED", f"10.0.0.5:{5432}", f"10.20.0.{n}:{40000 + n}", 700 + n % 2)
        for n in range(10, 16)
    ] + [sock("LISTEN", "0.0.0.0:5432", "0.0.0.0:0", 700, listen_backlog=128)]
    processes = [proc(700, long_name), proc(701, "pgbouncer")]
    path = tmp_path / "sockets.json"
    write_snapshot(snap(sockets, processes), path)
    return path


def test_sockets_at_80_columns_keep_one_row_per_socket(tmp_path: Path) -> None:
    path = _sockets_file(tmp_path)
    run = run_in_terminal(["sockets", "--from", str(path), "--no-pager"], 80, 24)
    assert run.status == 0
    rows = [row for row in run.screen if row.startswith(("ESTABLISHED", "LISTEN"))]
    assert len(rows) == 7  # one row each, nothing wrapped onto a second
    for n in range(10, 16):
        assert any(f"10.20.0.{n}:{40000 + n}" in row for row in rows)  # addresses whole
    shortened = [row for row in rows if " 700 postgr" in row]
    assert len(shortened) == 4
    assert shortened and all(row.endswith("…") for row in shortened)
    assert all(len(row) <= 80 for row in run.screen)


def test_sockets_at_120_columns_show_the_whole_process_name(tmp_path: Path) -> None:
    path = _sockets_file(tmp_path)
    run = run_in_terminal(["sockets", "--from", str(path), "--no-pager"], 120, 40)
    rows = [row for row in run.screen if row.startswith(("ESTABLISHED", "LISTEN"))]
    assert len(rows) == 7
    assert any(row.endswith("700 postgres-checkpointer-for-the-orders-database") for row in rows)


# --- the pager ------------------------------------------------------------------------------------


def test_the_pager_is_chosen_as_git_and_systemctl_choose_it() -> None:
    assert choose_pager({}, stdout_isatty=True, no_pager=False) == "less"
    assert choose_pager({"PAGER": "most"}, True, False) == "most"
    assert choose_pager({"PAGER": "most", "TCPHEALTH_PAGER": "less -S"}, True, False) == "less -S"
    assert choose_pager({"TCPHEALTH_PAGER": ""}, True, False) is None
    assert choose_pager({"TCPHEALTH_PAGER": "cat"}, True, False) is None
    assert choose_pager({"PAGER": ""}, True, False) is None
    assert choose_pager({"PAGER": "most"}, stdout_isatty=False, no_pager=False) is None
    assert choose_pager({"PAGER": "most"}, stdout_isatty=True, no_pager=True) is None


def _paged_into(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    paged = tmp_path / "paged.txt"
    return paged, {"TCPHEALTH_PAGER": f"cat > {paged}"}


def test_output_taller_than_the_screen_goes_through_the_pager(tmp_path: Path) -> None:
    paged, env = _paged_into(tmp_path)
    run = run_in_terminal(["--from", K8S, "--quiet"], 80, 24, env=env)
    assert run.status == 0
    text = re.sub(r"\x1b\[[0-9;]*m", "", paged.read_text())  # in colour: less -R shows it
    assert "\x1b[" in paged.read_text()
    assert text.startswith("ip-172-1-57-200  source")
    assert "Verdict: 20 critical, 1 warning\n" in text
    assert not run.visible("Verdict")  # the pager had it, not the terminal


@pytest.mark.parametrize(
    "args",
    [
        ["--from", K8S, "--quiet", "--no-pager"],  # told not to
        ["--no-pager", "--from", K8S, "--quiet"],  # told not to, before the options
        ["--from", "fixtures/healthy.json", "--brief", "--quiet"],  # it fits the screen
    ],
)
def test_no_pager_when_told_or_when_the_output_fits(tmp_path: Path, args: list[str]) -> None:
    paged, env = _paged_into(tmp_path)
    run = run_in_terminal(args, 80, 24, env=env)
    assert run.status == 0
    assert not paged.exists()
    assert run.visible("Verdict: ")


def test_no_pager_when_stdout_is_piped(tmp_path: Path) -> None:
    paged, env = _paged_into(tmp_path)
    out = tmp_path / "out.txt"
    with out.open("wb") as handle:
        run = run_in_terminal(
            ["--from", K8S, "--quiet", "--format", "table"],
            80,
            24,
            env=env,
            stdout_to=handle.fileno(),
        )
    assert run.status == 0
    assert not paged.exists()
    assert "Verdict: 20 critical, 1 warning" in out.read_text()


def test_a_pager_that_does_not_start_loses_nothing() -> None:
    run = run_in_terminal(
        ["--from", K8S, "--quiet"], 80, 24, env={"TCPHEALTH_PAGER": "no-such-pager-here"}
    )
    assert run.status == 0
    assert any("Verdict: 20 critical, 1 warning; worst:" in row for row in run.transcript)


# --- progress and Ctrl-C --------------------------------------------------------------------------


def test_progress_is_drawn_on_a_terminal(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with out.open("wb") as handle:
        run = run_in_terminal(
            ["--samples", "3", "--interval", "0.2", "--quiet"], stdout_to=handle.fileno()
        )
    assert run.status == 0
    assert b"sampling" in run.raw
    assert re.search(rb"sample [0-3]/3", run.raw)
    assert b" s left" in run.raw
    # transient: once the samples are in, the bar is gone from the screen
    assert not run.visible("sampling")
    assert "SERIES samples=3" in out.read_text()


def test_no_progress_when_stderr_is_not_a_terminal() -> None:
    for args in (["--samples", "3", "--interval", "0.1"], ["snapshot", "--samples", "2"]):
        result = subprocess.run(
            [*TCPHEALTH, *args, "--interval", "0.1", "--quiet"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""


def _sample_taken(number: int, planned: int) -> object:
    return lambda raw: f"sample {number}/{planned}".encode() in raw


def test_ctrl_c_during_samples_diagnoses_the_samples_taken(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with out.open("wb") as handle:
        run = run_in_terminal(
            ["--samples", "50", "--interval", "0.3", "--quiet"],
            stdout_to=handle.fileno(),
            interrupt_when=_sample_taken(2, 50),  # type: ignore[arg-type]
        )
    assert run.status == 130
    said = re.search(rb"interrupted after (\d+) of 50 samples: the diagnosis is of those", run.raw)
    assert said, run.raw
    taken = int(said.group(1))
    assert 2 <= taken < 50
    assert f"SERIES samples={taken} " in out.read_text()


def test_ctrl_c_with_one_sample_has_nothing_to_diagnose(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with out.open("wb") as handle:
        run = run_in_terminal(
            ["--samples", "50", "--interval", "5", "--quiet"],
            stdout_to=handle.fileno(),
            interrupt_when=_sample_taken(1, 50),  # type: ignore[arg-type]
        )
    assert run.status == 130
    assert b"tcphealth: interrupted" in run.raw
    assert out.read_text() == ""


def test_ctrl_c_during_snapshot_samples_writes_a_partial_series(tmp_path: Path) -> None:
    target = tmp_path / "incident.json"
    run = run_in_terminal(
        ["snapshot", "--samples", "50", "--interval", "0.3", "-o", str(target), "--quiet"],
        interrupt_when=_sample_taken(2, 50),  # type: ignore[arg-type]
    )
    assert run.status == 130
    said = re.search(
        rb"interrupted after (\d+) of 50 samples; wrote them to (\S+), marked", run.raw
    )
    assert said, run.raw
    document = json.loads(target.read_text())
    assert document["partial"] is True
    assert document["samples_planned"] == 50
    assert len(document["samples"]) == int(said.group(1)) >= 2
    assert [p.name for p in tmp_path.iterdir()] == ["incident.json"]  # no temporary left
    # ... and it reads back as the series it is.
    replay = CliRunner().invoke(main, ["--from", str(target), "--format", "plain", "--quiet"])
    assert f"SERIES samples={len(document['samples'])} " in replay.stdout


def test_snapshot_o_says_what_it_wrote(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    fixture = str(ROOT / "fixtures" / "close-wait-leak.json")
    result = CliRunner().invoke(main, ["snapshot", "--from", fixture, "-o", str(target)])
    assert result.exit_code == 0
    assert result.stderr == f"tcphealth: wrote a snapshot (255 sockets in the last) to {target}\n"
    quiet = CliRunner().invoke(main, ["snapshot", "--from", fixture, "-o", str(target), "-q"])
    assert quiet.stderr == ""


# --- the man page and shell completion ------------------------------------------------------------


def test_the_man_page_is_made_from_the_help_and_up_to_date() -> None:
    made = page()
    assert (ROOT / "man" / "tcphealth.1").read_text() == made, "run `make man`"
    sections = re.findall(r"^\.SH (.+)$", made, flags=re.MULTILINE)
    assert sections == [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "COMMANDS",
        "SHELL COMPLETION",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "SEE ALSO",
    ]
    commands = re.findall(r"^\.SS tcphealth (\S+)$", made, flags=re.MULTILINE)
    assert commands == sorted(main.commands)
    for option in ("\\-\\-brief", "\\-\\-no\\-pager", "\\-\\-color", "\\-\\-fail\\-on"):
        assert option in made


@pytest.mark.skipif(shutil.which("man") is None, reason="man-db is not installed")
def test_man_renders_the_page() -> None:
    shown = subprocess.run(
        ["man", "-l", str(ROOT / "man" / "tcphealth.1")],
        capture_output=True,
        text=True,
        env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80"},
        timeout=60,
        check=True,
    ).stdout
    assert shown.startswith("TCPHEALTH(1)")
    assert "--samples N" in shown


def test_make_installs_the_man_page_where_man_finds_it() -> None:
    if sys.prefix == sys.base_prefix:
        pytest.skip("not in the virtualenv make builds")
    installed = Path(sys.prefix) / "share" / "man" / "man1" / "tcphealth.1"
    assert installed.read_text() == page()
    if shutil.which("manpath"):
        bin_dir = str(Path(sys.prefix) / "bin")
        env = {k: v for k, v in os.environ.items() if k != "MANPATH"}
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
        found = subprocess.run(
            ["man", "-w", "tcphealth"], capture_output=True, text=True, env=env, check=False
        )
        assert found.stdout.strip() == str(installed)


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _tcphealth_completion tcphealth"),
        ("zsh", "#compdef tcphealth"),
        ("fish", "complete --no-files --command tcphealth"),
    ],
)
def test_completion_scripts_for_each_shell(shell: str, marker: str) -> None:
    result = CliRunner().invoke(main, ["completion", shell])
    assert result.exit_code == 0
    assert marker in result.stdout
    assert "_TCPHEALTH_COMPLETE" in result.stdout


def _complete(shell: str, words: str) -> list[str]:
    env = {**os.environ, "_TCPHEALTH_COMPLETE": f"{shell}_complete"}
    cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    if shell == "fish":  # fish passes the word being completed itself
        cword = "" if words.endswith(" ") else words.split()[-1]
    env.update(COMP_WORDS=words, COMP_CWORD=cword)
    out = subprocess.run(
        [*TCPHEALTH], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    if shell == "fish":
        return [line.split(",", 1)[1].split("\t")[0] for line in out.splitlines()]
    if shell == "zsh":
        return out.splitlines()[1::3]
    return [line.split(",", 1)[1] for line in out.splitlines()]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_offers_commands_options_formats_and_states(shell: str) -> None:
    assert "completion" in _complete(shell, "tcphealth co")
    assert "config" in _complete(shell, "tcphealth co")
    assert _complete(shell, "tcphealth explain clo") == ["close", "close-wait", "closing"]
    assert _complete(shell, "tcphealth --state CLOSE_") == ["CLOSE_WAIT"]
    assert _complete(shell, "tcphealth --format ") == ["table", "plain", "json", "ndjson"]
    assert "--no-pager" in _complete(shell, "tcphealth check --no-")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_state_names_through_the_script() -> None:
    bin_dir = Path(sys.executable).parent
    script = (
        'eval "$(tcphealth completion bash)"; '
        "COMP_WORDS=(tcphealth explain fin); COMP_CWORD=2; _tcphealth_completion tcphealth; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    if not (bin_dir / "tcphealth").exists():
        pytest.skip("the tcphealth script is not installed beside this python")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run(
        ["bash", "--norc", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["fin-wait-1", "fin-wait-2"], out.stderr


# --- options anywhere, colour, quiet, port ranges, state spellings -------------------------------

LEAK = str(ROOT / "fixtures" / "close-wait-leak.json")


@pytest.mark.parametrize(
    "args",
    [
        ["--debug", "check", "--from", "/nonexistent/x.json"],
        ["check", "--from", "/nonexistent/x.json", "--debug"],
        ["sockets", "--debug", "--from", "/nonexistent/x.json"],
    ],
)
def test_debug_is_accepted_before_or_after_the_command(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("tcphealth: ")


def test_color_always_never_and_auto() -> None:
    escape = "\x1b["
    always = CliRunner().invoke(main, ["--from", LEAK, "--format", "table", "--color", "always"])
    assert escape in always.stdout
    never = CliRunner().invoke(main, ["--color", "never", "--from", LEAK, "--format", "table"])
    assert escape not in never.stdout
    auto = CliRunner().invoke(main, ["--from", LEAK, "--format", "table"])  # piped: none
    assert escape not in auto.stdout
    bad = CliRunner().invoke(main, ["--color", "sometimes"])
    assert bad.exit_code == 3


def test_quiet_silences_the_notes_not_the_warnings(tmp_path: Path) -> None:
    paste = tmp_path / "ss.txt"
    paste.write_text(
        "State  Recv-Q Send-Q Local Address:Port  Peer Address:Port\n"
        "ESTAB  0      0      10.0.0.5:22         10.0.0.9:50000\n"
        "ESTAB  0      0      10.0.0.5:22         10.0.0.9:50000\n"
        "ESTAB  zero   0      10.0.0.5:22         10.0.0.9:50001\n"
    )
    loud = CliRunner().invoke(main, ["--from", str(paste), "--format", "plain"])
    assert "tcphealth: note: " in loud.stderr
    quiet = CliRunner().invoke(main, ["--from", str(paste), "--format", "plain", "--quiet"])
    assert "tcphealth: note: " not in quiet.stderr
    assert ("tcphealth: warning: " in loud.stderr) == ("tcphealth: warning: " in quiet.stderr)


@pytest.mark.parametrize(
    ("text", "ports"),
    [("8080", [8080]), ("8000-8002", [8000, 8001, 8002]), (" 22 ", [22]), ("0-0", [0])],
)
def test_port_ranges(text: str, ports: list[int]) -> None:
    assert list(parse_ports(text)) == ports


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9-1", "'9-1': the range runs backwards (write 1-9)"),
        ("70000", "'70000': 70000 is not a port (0 to 65535)"),
        ("1-70000", "'1-70000': 70000 is not a port (0 to 65535)"),
        ("http", "'http' is not a port or a range of ports (8080, 8000-8100)"),
        ("1-", "'1-' is not a port or a range of ports (8080, 8000-8100)"),
    ],
)
def test_a_bad_port_range_is_a_clear_usage_error(text: str, message: str) -> None:
    result = CliRunner().invoke(main, ["--from", LEAK, "--port", text])
    assert result.exit_code == 3
    assert message in result.stderr


def test_a_port_range_filters_the_sockets() -> None:
    result = CliRunner().invoke(
        main, ["sockets", "--from", LEAK, "--port", "8000-8100", "--format", "plain"]
    )
    lines = result.stdout.splitlines()
    assert lines and all(":8080 " in line for line in lines)
    header = CliRunner().invoke(main, ["--from", LEAK, "--port", "8000-8100", "--format", "table"])
    assert "filtered: port=8000-8100" in header.stdout


@pytest.mark.parametrize(
    ("spelling", "state"),
    [
        # ss
        ("estab", TcpState.ESTABLISHED),
        ("syn-recv", TcpState.SYN_RECV),
        ("fin-wait-2", TcpState.FIN_WAIT2),
        ("unconn", TcpState.CLOSE),
        # Linux netstat, and the kernel's own names
        ("FIN_WAIT2", TcpState.FIN_WAIT2),
        ("CLOSE_WAIT", TcpState.CLOSE_WAIT),
        # /proc/net/tcp's st column (hex)
        ("01", TcpState.ESTABLISHED),
        ("06", TcpState.TIME_WAIT),
        ("0A", TcpState.LISTEN),
        ("0x08", TcpState.CLOSE_WAIT),
        # macOS / BSD netstat
        ("SYN_RCVD", TcpState.SYN_RECV),
        ("FIN_WAIT_1", TcpState.FIN_WAIT1),
        ("CLOSED", TcpState.CLOSE),
        # Windows netstat and PowerShell's Get-NetTCPConnection
        ("LISTENING", TcpState.LISTEN),
        ("SYN_RECEIVED", TcpState.SYN_RECV),
        ("TimeWait", TcpState.TIME_WAIT),
        ("FinWait2", TcpState.FIN_WAIT2),
        ("SynReceived", TcpState.SYN_RECV),
        ("DeleteTcb", TcpState.CLOSE),
        # typed without separators
        ("finwait2", TcpState.FIN_WAIT2),
        ("closewait", TcpState.CLOSE_WAIT),
        ("timewait", TcpState.TIME_WAIT),
    ],
)
def test_every_tools_state_spelling_is_accepted(spelling: str, state: TcpState) -> None:
    assert state_asked_for(spelling) is state
    explained = CliRunner().invoke(main, ["explain", spelling, "--format", "json"])
    assert explained.exit_code == 0, explained.stderr
    assert json.loads(explained.stdout)["state"] == state.value
    filtered = CliRunner().invoke(main, ["--from", LEAK, "--state", spelling, "--format", "plain"])
    assert filtered.exit_code == 0, filtered.stderr


@pytest.mark.parametrize("text", ["bogus", "0E", "0x100", "fin-wait-3", ""])
def test_what_is_no_state_is_refused(text: str) -> None:
    assert state_asked_for(text) is None
    assert CliRunner().invoke(main, ["explain", text]).exit_code == 3


def test_a_slow_read_shows_a_spinner_until_it_ends(tmp_path: Path) -> None:
    """A read that does not end at once -- here a named pipe nobody writes into yet -- gets a
    spinner after a second; once the input arrives the spinner goes and the report follows."""
    fifo = tmp_path / "paste"
    os.mkfifo(fifo)
    content = (ROOT / "fixtures" / "close-wait-leak.json").read_bytes()
    # Held open for writing from the start, so the reader waits for data instead of seeing
    # the end of a pipe nobody writes into.
    writer = os.open(fifo, os.O_RDWR)
    fed: list[bool] = []

    def feed_when_spinning(raw: bytes) -> bytes | None:
        if b"reading the sockets" in raw and not fed:
            fed.append(True)
            os.write(writer, content)
            os.close(writer)
        return None

    try:
        run = run_in_terminal(
            ["--from", str(fifo), "--brief", "--quiet"], answer=feed_when_spinning, timeout=60
        )
    finally:
        if not fed:
            os.close(writer)
    assert fed, "no spinner while the read waited"
    assert run.status == 0
    assert not run.visible("reading the sockets")  # gone once the read ended
    assert run.visible("Verdict: 1 warning")


def test_a_quick_read_draws_no_spinner() -> None:
    run = run_in_terminal(["--from", "fixtures/close-wait-leak.json", "--brief", "--quiet"])
    assert run.status == 0
    assert b"reading the sockets" not in run.raw


# --- the plumbing under them ----------------------------------------------------------------------


class _Interrupted:
    """Inputs whose live samples are ``before`` snapshots, then Ctrl-C."""

    def __init__(self, before: int) -> None:
        self.before = before

    def live_samples(self, count: int | None, interval: float) -> Iterator[Snapshot]:
        for number in range(self.before):
            yield snap(hostname=f"sample-{number + 1}")
        raise KeyboardInterrupt


def test_take_samples_keeps_what_it_took_on_ctrl_c() -> None:
    seen: list[int] = []
    taken = take_samples(_Interrupted(3), 10, 1.0, seen.append)  # type: ignore[arg-type]
    assert [s.host.hostname for s in taken.samples] == ["sample-1", "sample-2", "sample-3"]
    assert taken.planned == 10 and taken.cut_short
    assert seen == [1, 2, 3]
    with pytest.raises(KeyboardInterrupt):
        take_samples(_Interrupted(1), 10, 1.0)  # type: ignore[arg-type]
    assert len(take_samples(_Interrupted(1), 10, 1.0, keep_at_least=1).samples) == 1  # type: ignore[arg-type]


def test_paged_output_that_fits_goes_straight_to_the_terminal() -> None:
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), height=5, pager="false")
    with paged(env) as shown:
        shown.stdout.write("1\n2\n3\n4\n")
    assert env.stdout.getvalue() == "1\n2\n3\n4\n"  # type: ignore[attr-defined]
    assert fits("1\n2\n3\n4\n", 5) and not fits("1\n2\n3\n4\n5\n", 5)


def test_a_series_cut_short_says_partial_and_a_whole_one_does_not() -> None:
    samples = [snap(), snap()]
    assert '"partial": true, "samples_planned": 5,' in series_to_json(samples, 5)
    assert "partial" not in series_to_json(samples, 2)
    assert "partial" not in series_to_json(samples)
