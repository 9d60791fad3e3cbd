"""Issue 26: the cracks a mutation fuzz found on 6c4d4a4, one test each.

Each builds its input for real (a copied /proc tree in a temporary directory, a snapshot with
one field changed, a thresholds file, /dev/full as standard output) and asserts the exact
line and exit code: an input error names the path or the field, a row out of range is a
skipped row with its reason, never a socket in the report, and no run ends in "internal
error".
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tcphealth.cli import main
from tcphealth.diagnose import config as diagnose_config
from tcphealth.sources import procfs

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n"
)


def proc_row(
    local: str = "0100007F:0016",
    remote: str = "00000000:0000",
    state: str = "0A",
    queues: str = "00000000:00000000",
    timer: str = "00:00000000",
    retransmits: str = "00000000",
    uid: str = "0",
    inode: str = "12345",
) -> str:
    return (
        f"   0: {local} {remote} {state} {queues} {timer} {retransmits}  {uid}        0 "
        f"{inode} 1 0000000000000000 100 0 0 10 0\n"
    )


GOOD_ROW = proc_row(local="0100007F:0050", inode="777")


@pytest.fixture(autouse=True)
def _no_config_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagnose_config, "SEARCH_PATHS", (), raising=False)


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def proc_tree(tmp_path: Path, rows: str = GOOD_ROW) -> Path:
    root = tmp_path / "proc"
    (root / "net").mkdir(parents=True)
    (root / "net" / "tcp").write_text(HEADER + rows, encoding="utf-8")
    return root


def plain_sockets(result: Result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line]


# --- a copied /proc tree ------------------------------------------------------------------------


def test_an_fd_directory_that_is_a_symlink_loop_is_an_input_error_naming_it(
    tmp_path: Path,
) -> None:
    root = proc_tree(tmp_path)
    (root / "4242").mkdir()
    os.symlink("fd", root / "4242" / "fd")  # fd -> fd: ELOOP
    result = run("sockets", "--from", root)
    assert result.exit_code == 3
    assert result.stderr == (f"tcphealth: {root}/4242/fd: Too many levels of symbolic links\n")


def test_a_pid_directory_that_is_a_symlink_loop_is_an_input_error_naming_it(
    tmp_path: Path,
) -> None:
    root = proc_tree(tmp_path)
    os.symlink("4243", root / "4243")
    result = run("check", "--from", root)
    assert result.exit_code == 3
    assert result.stderr == f"tcphealth: {root}/4243: Too many levels of symbolic links\n"


def test_non_ascii_digits_name_no_pid_and_no_socket(tmp_path: Path) -> None:
    """'²' passes str.isdigit() and int() refuses it; '٣' int() reads as 3. Neither is a pid
    directory or a socket inode of /proc."""
    root = proc_tree(tmp_path, proc_row(inode="3"))
    for name in ("²", "٣", "4242"):
        (root / name / "fd").mkdir(parents=True)
    os.symlink("socket:[²]", root / "²" / "fd" / "1")
    os.symlink("socket:[3]", root / "٣" / "fd" / "1")  # would credit pid 3
    os.symlink("socket:[٣]", root / "4242" / "fd" / "1")  # would credit inode 3 to 4242
    result = run("sockets", "--from", root, "--format", "json")
    assert result.exit_code == 0, result.stderr
    (sock,) = json.loads(result.stdout)["sockets"]
    assert sock["pids"] == []
    assert sock["owner"] == "unseen"


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        # OverflowError: can't convert negative int to unsigned
        (proc_row(local="-100007F:0016"), "characters no /proc/net/tcp column holds"),
        # OverflowError: integer division result too large for a float
        (proc_row(timer="01:" + "F" * 400), "timer 'FFFF"),
        # ValueError: Exceeds the limit (4300 digits), when the port was printed
        (proc_row(local="0100007F:" + "F" * 4000), "local: a 16,000-bit number is not a port"),
        (proc_row(local="0100007F:1F4A3B"), "local: 2050619 is not a port (0-65535)"),
        (proc_row(queues="00000000:" + "F" * 9), "recv queue: 68719476735 is over"),
        (proc_row(inode="٣"), "characters no /proc/net/tcp column holds"),
        (proc_row(uid="4294967295"), "uid: 4294967295 is over"),
        (proc_row(state="100"), "state '100' is wider than"),
    ],
)
def test_table_rows_out_of_range_are_skipped_with_their_reason(
    tmp_path: Path, row: str, reason: str
) -> None:
    root = proc_tree(tmp_path, row + GOOD_ROW)
    result = run("sockets", "--from", root / "net" / "tcp")
    assert result.exit_code == 0, result.stderr
    assert len(plain_sockets(result)) == 1
    assert "local=127.0.0.1:80 " in result.stdout
    assert f"tcp:2: line skipped: {reason}" in result.stderr
    assert "internal error" not in result.stderr
    strict = run("sockets", "--strict", "--from", root / "net" / "tcp")
    assert strict.exit_code == 3
    assert f"tcp:2: {reason}" in strict.stderr


def test_command_lines_and_names_are_capped_and_marked_before_they_are_kept(
    tmp_path: Path,
) -> None:
    root = proc_tree(tmp_path)
    process = root / "4242"
    (process / "fd").mkdir(parents=True)
    os.symlink("socket:[777]", process / "fd" / "3")
    (process / "cmdline").write_bytes(b"server\0" + b"x" * 1_000_000 + b"\0tail\0")
    (process / "comm").write_text("n" * 10_000 + "\n", encoding="utf-8")
    result = run("sockets", "--from", root, "--format", "json")
    assert result.exit_code == 0, result.stderr
    (process_json,) = json.loads(result.stdout)["processes"]
    cmdline = process_json["cmdline"]
    assert cmdline[0] == "server"
    assert cmdline[1] == "x" * (procfs.MAX_CMDLINE_CHARS - len("server")) + procfs.CUT_MARK
    assert len(cmdline) == 2
    assert process_json["name"] == "n" * procfs.MAX_NAME_CHARS + procfs.CUT_MARK


def test_a_pasted_program_name_is_capped_and_marked_like_one_from_proc(tmp_path: Path) -> None:
    """Found by `make fuzz` (seed 26): a netstat row whose PID/Program ran on for 5,000
    characters kept them all, in every record of that process."""
    long_name = "java" + "x" * 5_000
    paste = tmp_path / "netstat.txt"
    paste.write_text(
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State       "
        "PID/Program name\n"
        f"tcp        0      0 10.0.0.5:8080           10.0.0.9:51000          CLOSE_WAIT  "
        f"4242/{long_name}\n",
        encoding="utf-8",
    )
    result = run("sockets", "--from", paste, "--format", "json")
    assert result.exit_code == 0, result.stderr
    (process_json,) = json.loads(result.stdout)["processes"]
    assert process_json["pid"] == 4242
    assert process_json["name"] == long_name[: procfs.MAX_NAME_CHARS] + procfs.CUT_MARK


def test_a_snapshot_names_and_command_line_are_capped_and_marked(tmp_path: Path) -> None:
    document = json.loads((FIXTURES / "close-wait-leak.json").read_text(encoding="utf-8"))
    process = document["snapshot"]["processes"][0]
    process["name"] = "n" * 5_000
    process["user"] = "u" * 300
    process["cmdline"] = ["server", "x" * 10_000, "tail"]
    path = tmp_path / "long.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    result = run("sockets", "--from", path, "--format", "json")
    assert result.exit_code == 0, result.stderr
    (shown,) = [p for p in json.loads(result.stdout)["processes"] if p["pid"] == process["pid"]]
    assert shown["name"] == "n" * procfs.MAX_NAME_CHARS + procfs.CUT_MARK
    assert shown["user"] == "u" * procfs.MAX_NAME_CHARS + procfs.CUT_MARK
    assert shown["cmdline"] == [
        "server",
        "x" * (procfs.MAX_CMDLINE_CHARS - len("server")) + procfs.CUT_MARK,
    ]


# --- impossible values in snapshots and series ------------------------------------------------


def _socket_change(field: str, value: Any) -> Any:
    def change(sock: dict[str, Any]) -> None:
        target = sock
        *parents, last = field.split(".")
        for name in parents:
            target = target[name]
        target[last] = value

    return change


SOCKET_CASES = [
    ("remote.port", 1194859, "snapshot.sockets[0].remote: 1194859 is not a port (0-65535)"),
    ("local.port", -1, "snapshot.sockets[0].local: -1 is not a port (0-65535)"),
    ("pids", [0], "snapshot.sockets[0].pids: pid 0 is below 1"),
    ("pids", [-1], "snapshot.sockets[0].pids: pid -1 is below 1"),
    ("uid", -1, "snapshot.sockets[0].uid: -1 is negative"),
    ("inode", -9223372036854775809, "snapshot.sockets[0].inode: -9223372036854775809 is negative"),
    ("recv_queue", -16777216, "snapshot.sockets[0].recv_queue: -16777216 is negative"),
    ("retransmits", -16777216, "snapshot.sockets[0].retransmits: -16777216 is negative"),
    ("local.address", "::1", "snapshot.sockets[0].local: ::1 is not an ipv4 address"),
    ("timer_seconds", -5.0, "snapshot.sockets[0].timer_seconds: -5.0 is not a time left"),
]


@pytest.mark.parametrize(("field", "value", "message"), SOCKET_CASES)
def test_a_snapshot_with_an_impossible_value_is_refused_naming_the_field(
    tmp_path: Path, field: str, value: Any, message: str
) -> None:
    document = json.loads((FIXTURES / "close-wait-leak.json").read_text(encoding="utf-8"))
    _socket_change(field, value)(document["snapshot"]["sockets"][0])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    result = run("check", "--from", path)
    assert result.exit_code == 3
    assert result.stderr.startswith(f"tcphealth: {path}: {message}")
    assert result.stderr.count("\n") == 1


def test_an_ipv6_socket_with_an_ipv4_address_is_refused(tmp_path: Path) -> None:
    document = json.loads((FIXTURES / "close-wait-leak.json").read_text(encoding="utf-8"))
    document["snapshot"]["sockets"][0]["family"] = "ipv6"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    result = run("check", "--from", path)
    assert result.exit_code == 3
    assert result.stderr == (
        f"tcphealth: {path}: snapshot.sockets[0].local: 0.0.0.0 is not an ipv6 address\n"
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("pid", 0, "snapshot.processes[0].pid: 0 is below 1"),
        ("uid", -1, "snapshot.processes[0].uid: -1 is negative"),
        ("open_fds", -3, "snapshot.processes[0].open_fds: -3 is negative"),
    ],
)
def test_a_process_with_an_impossible_value_is_refused(
    tmp_path: Path, field: str, value: int, message: str
) -> None:
    document = json.loads((FIXTURES / "close-wait-leak.json").read_text(encoding="utf-8"))
    document["snapshot"]["processes"][0][field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    result = run("check", "--from", path)
    assert result.exit_code == 3
    assert result.stderr == f"tcphealth: {path}: {message}\n"


def test_a_series_sample_with_an_impossible_value_is_refused_naming_the_sample(
    tmp_path: Path,
) -> None:
    document = json.loads(
        (FIXTURES / "series" / "close-wait-leak.json").read_text(encoding="utf-8")
    )
    changed = copy.deepcopy(document)
    changed["samples"][1]["snapshot"]["sockets"][0]["remote"]["port"] = 70000
    path = tmp_path / "series.json"
    path.write_text(json.dumps(changed), encoding="utf-8")
    result = run("check", "--from", path)
    assert result.exit_code == 3
    assert result.stderr == (
        f"tcphealth: {path}: sample 2: snapshot.sockets[0].remote: 70000 is not a port (0-65535)\n"
    )


def test_a_pasted_row_naming_pid_0_is_skipped_not_reported(tmp_path: Path) -> None:
    paste = tmp_path / "ss.txt"
    paste.write_text(
        "State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n"
        'ESTAB 0 0 10.0.0.1:8080 10.0.0.3:5556 users:(("java",pid=0,fd=9))\n'
        'ESTAB 0 0 10.0.0.1:8080 10.0.0.3:5557 users:(("java",pid=812,fd=10))\n',
        encoding="utf-8",
    )
    result = run("sockets", "--from", paste)
    assert result.exit_code == 0, result.stderr
    assert len(plain_sockets(result)) == 1
    assert "remote=10.0.0.3:5557" in result.stdout
    assert "ss.txt:2: line skipped: holder: pid 0 is below 1" in result.stderr


# --- thresholds files -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "+nan", "-nan", "inf", "-inf"])
def test_non_finite_thresholds_are_refused_naming_the_key(tmp_path: Path, value: str) -> None:
    config = tmp_path / "t.toml"
    config.write_text(f"[thresholds]\naccept_queue_critical_ratio = {value}\n", encoding="utf-8")
    for args in (
        ("config", "--format", "json", "--config", config),
        ("check", "--from", FIXTURES / "listener-not-accepting.json", "--config", config),
    ):
        result = run(*args)
        assert result.exit_code == 3
        assert result.stderr == (
            f"tcphealth: {config}: thresholds.accept_queue_critical_ratio: must be a ratio "
            f"above 0 and at most 1000, got {float(value)!r}\n"
        )


def test_a_zero_count_threshold_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "t.toml"
    config.write_text("[thresholds]\nclosing_warning = 0\n", encoding="utf-8")
    result = run("check", "--from", FIXTURES / "healthy.json", "--config", config)
    assert result.exit_code == 3
    assert result.stderr == (
        f"tcphealth: {config}: thresholds.closing_warning: must be a count from 1 to "
        "1,000,000,000, got 0\n"
    )


def test_a_zero_min_retransmits_means_any_and_is_accepted(tmp_path: Path) -> None:
    config = tmp_path / "t.toml"
    config.write_text("[thresholds]\nclosing_min_retransmits = 0\n", encoding="utf-8")
    result = run("check", "--from", FIXTURES / "healthy.json", "--config", config)
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[thresholds]\nx = " + "[" * 100_000 + "\n", ":2: nested more than 16 deep"),
        ("[thresholds]\n" + "a." * 300_000 + "b = 1\n", ":2: a key of more than 16 dotted parts"),
    ],
)
def test_deep_thresholds_files_are_refused_before_parsing(
    tmp_path: Path, text: str, problem: str
) -> None:
    config = tmp_path / "t.toml"
    config.write_text(text, encoding="utf-8")
    result = run("check", "--from", FIXTURES / "healthy.json", "--config", config)
    assert result.exit_code == 3
    assert result.stderr == (
        f"tcphealth: {config}{problem}; a thresholds file holds one flat table\n"
    )


def test_a_directory_as_the_thresholds_file_is_one_line(tmp_path: Path) -> None:
    result = run("check", "--from", FIXTURES / "healthy.json", "--config", tmp_path)
    assert result.exit_code == 3
    assert result.stderr == f"tcphealth: {tmp_path}: cannot read: a directory, not a file\n"


# --- writing output ---------------------------------------------------------------------------


def _cli(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcphealth", *args],
        capture_output=kwargs.pop("capture_output", "stdout" not in kwargs),
        text=True,
        timeout=60,
        check=False,
        **kwargs,
    )


@pytest.mark.parametrize("fmt", ["plain", "json", "table"])
def test_standard_output_on_a_full_disk_is_one_line_exit_3(fmt: str) -> None:
    with open("/dev/full", "w", encoding="utf-8") as full:
        done = _cli(
            ["sockets", "--from", str(FIXTURES / "close-wait-leak.json"), "--format", fmt],
            stdout=full,
            stderr=subprocess.PIPE,
        )
    assert done.returncode == 3
    assert done.stderr == "tcphealth: cannot write standard output: No space left on device\n"


def test_a_closed_standard_output_is_one_line_exit_3() -> None:
    done = subprocess.run(
        f"{sys.executable} -m tcphealth sockets --from {FIXTURES / 'healthy.json'} >&-",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert done.stderr == "tcphealth: cannot write standard output: it is closed\n"


def test_snapshot_output_with_a_name_of_250_bytes(tmp_path: Path) -> None:
    target = tmp_path / ("s" * 245 + ".json")
    result = run("snapshot", "--from", FIXTURES / "healthy.json", "-o", target)
    assert result.exit_code == 0, result.stderr
    assert json.loads(target.read_text(encoding="utf-8"))["format"] == "tcphealth.snapshot"
    assert sorted(path.name for path in tmp_path.iterdir()) == [target.name]


def test_snapshot_output_naming_a_directory_is_one_line(tmp_path: Path) -> None:
    result = run("snapshot", "--from", FIXTURES / "healthy.json", "-o", tmp_path)
    assert result.exit_code == 3
    assert result.stderr == f"tcphealth: cannot write {tmp_path}: a directory, not a file\n"
    assert list(tmp_path.iterdir()) == []
