"""Bad files from strangers: each is one line on stderr naming the file (and the line, where
there is one) and what is wrong, exit 3, and no traceback -- unless ``--debug``. A paste with
only some broken lines is diagnosed, with the skipped lines counted.

Every case builds its file for real in a temporary directory: empty, binary, NUL bytes,
truncated or mis-shaped JSON, a newer version, 100,000 nested brackets, a sparse 2 GB file, a
/proc copy with missing or extra columns or non-hex fields or unknown states, CRLF, a
directory, an unreadable file, a named pipe, invalid UTF-8, and unbounded streams.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import tcphealth.pipeline
from tcphealth import reading, sources
from tcphealth.cli import main
from tcphealth.diagnose import config as diagnose_config
from tcphealth.errors import InputError
from tcphealth.sources import snapshot_file
from tests.privileges import can_drop_to, run_cli_as

REPO = Path(__file__).resolve().parent.parent
GOOD_SNAPSHOT = (REPO / "fixtures" / "healthy.json").read_text(encoding="utf-8")
PROC_HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode"
)
PROC_ROW = (
    "   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 "
    "12345 1 0000000000000000 100 0 0 10 0"
)
LISTEN_LINE = (
    "LISTEN local=127.0.0.1:22 remote=0.0.0.0:0 recv_q=0 send_q=0 backlog=- timer=none "
    "timer_s=- retrans=0 pid=- process=- uid=0 inode=12345 owner=unknown truncated=no age_s=- "
    "netns=- container=- pod=-"
)
SS_TEXT = (
    "State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n"
    'LISTEN 129 128 0.0.0.0:8080 0.0.0.0:* users:(("java",pid=812,fd=3))\n'
    'CLOSE-WAIT 1 0 10.0.0.1:8080 10.0.0.3:5556 users:(("java",pid=812,fd=9))\n'
)
NO_TABLE = (
    "no TCP socket table found (looked for lsof or netstat-linux or netstat-macos or "
    "netstat-windows or powershell or ss output): no line looked like a socket row, a "
    "per-state count or a count command"
)


@pytest.fixture(autouse=True)
def _no_config_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagnose_config, "SEARCH_PATHS", (), raising=False)


def run(*args: str | Path, stdin: str | bytes | None = None) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args], input=stdin)


def snapshot_document(**changes: object) -> str:
    document = json.loads(GOOD_SNAPSHOT)
    document.update(changes)
    return json.dumps(document)


def with_host(**host: object) -> str:
    document = json.loads(GOOD_SNAPSHOT)
    document["snapshot"]["host"].update(host)
    return json.dumps(document)


def proc_copy(*rows: str, newline: str = "\n") -> str:
    return newline.join([PROC_HEADER, *rows]) + newline


# (file name, content, the problem after "tcphealth: FILE[:LINE]: ", the line or None)
BAD_FILES: list[tuple[str, bytes | str, str, int | None]] = [
    ("empty.json", b"", "empty (0 bytes): nothing to read", None),
    ("empty.txt", b"", "empty (0 bytes): nothing to read", None),
    ("blank.txt", b"\n \r\n\t", "only blank space (5 bytes): nothing to read", None),
    (
        "garbage.bin",
        bytes(range(256)) * 4,
        f"{NO_TABLE}; it holds binary data (4 NUL bytes, 512 byte sequences not UTF-8), not text",
        None,
    ),
    ("garbage.json", bytes(range(256)) * 4, "not UTF-8 text (byte 128)", None),
    (
        "nuls.txt",
        b"\0" * 100,
        f"{NO_TABLE}; it holds binary data (100 NUL bytes), not text",
        None,
    ),
    (
        "nul-in.json",
        b'{"format":\0 "x"}',
        "not valid JSON: Expecting value (column 11)",
        1,
    ),
    (
        "truncated.json",
        GOOD_SNAPSHOT[:300],
        "not valid JSON: Unterminated string starting at (column 4)",
        16,
    ),
    (
        "list.json",
        "[1, 2, 3]",
        'not a tcphealth snapshot (no "format": "tcphealth.snapshot")',
        None,
    ),
    (
        "wrong-type.json",
        snapshot_document(snapshot={"host": 5}),
        "snapshot.host: expected an object, got a number",
        None,
    ),
    (
        "wrong-field.json",
        with_host(hostname=["a"]),
        "snapshot.host.hostname: expected a string, got a list",
        None,
    ),
    (
        "newer.json",
        snapshot_document(version=3),
        "snapshot version 3 is newer than this tcphealth reads (up to 2); upgrade tcphealth",
        None,
    ),
    ("deep.json", "[" * 100_000, "JSON nested too deeply", None),
    # Auto-detected as JSON by its first byte, whatever the name.
    ("deep.txt", '{"a":' * 100_000, "JSON nested too deeply", None),
    ("nan.json", with_host(taken_at=float("nan")), "not valid JSON: NaN is not a JSON value", None),
    (
        "infinite.json",
        with_host(taken_at=1).replace('"taken_at": 1', '"taken_at": 1e999'),
        "snapshot.host.taken_at: not a finite number",
        None,
    ),
    (
        "long-number.json",
        with_host(taken_at=1).replace('"taken_at": 1', '"taken_at": ' + "9" * 5000),
        "not valid JSON: a number over 4,300 digits long",
        None,
    ),
    (
        "missing-columns.txt",
        proc_copy("   0: 0100007F:0016 00000000:0000 0A 00000000:00000000"),
        "its only row cannot be read as a TCP socket: 5 columns, at least 10 expected",
        2,
    ),
    (
        "non-hex.txt",
        proc_copy(
            PROC_ROW.replace("0100007F", "0100007G"),
            PROC_ROW.replace("   0:", "   1:").replace(" 0A ", " 0X "),
        ),
        "none of its 2 rows can be read as a TCP socket; the first: '0100007G' is not hexadecimal",
        2,
    ),
    (
        "udp.txt",
        PROC_HEADER + " ref pointer drops\n" + PROC_ROW + "\n",
        "this is a UDP table (its header ends in 'drops', as /proc/net/udp does), not TCP",
        1,
    ),
    (
        "latin1.json",
        GOOD_SNAPSHOT.replace('"nginx"', '"ngïnx"').encode("latin-1"),
        "not UTF-8 text (byte {offset})",
        None,
    ),
]


def _expected_line(path: Path, problem: str, line: int | None, content: bytes) -> str:
    if "{offset}" in problem:
        problem = problem.format(offset=content.index(b"\xef"))
    location = f"{path}:{line}" if line is not None else str(path)
    return f"tcphealth: {location}: {problem}\n"


@pytest.mark.parametrize(
    ("name", "content", "problem", "line"), BAD_FILES, ids=[case[0] for case in BAD_FILES]
)
@pytest.mark.parametrize("command", [[], ["check"], ["sockets"], ["snapshot"]])
def test_bad_file_is_one_line_exit_3_no_traceback(
    tmp_path: Path,
    command: list[str],
    name: str,
    content: bytes | str,
    problem: str,
    line: int | None,
) -> None:
    path = tmp_path / name
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.write_bytes(data)
    result = run(*command, "--from", path)
    assert result.exit_code == 3
    assert result.stderr == _expected_line(path, problem, line, data)
    assert result.stdout == ""
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("name", ["truncated.json", "deep.json", "non-hex.txt"])
def test_debug_shows_the_traceback_then_the_same_line(tmp_path: Path, name: str) -> None:
    _, content, problem, line = next(case for case in BAD_FILES if case[0] == name)
    path = tmp_path / name
    path.write_text(str(content), encoding="utf-8")
    quiet = run("check", "--from", path)
    assert "Traceback" not in quiet.stderr
    loud = run("--debug", "check", "--from", path)
    assert loud.exit_code == 3
    assert loud.stderr.startswith("Traceback (most recent call last):\n")
    assert "tcphealth.errors." in loud.stderr  # the error the source raised, with its frames
    assert loud.stderr.endswith(_expected_line(path, problem, line, b""))
    env = CliRunner().invoke(main, ["check", "--from", str(path)], env={"TCPHEALTH_DEBUG": "1"})
    assert env.stderr.startswith("Traceback (most recent call last):\n")
    assert env.stderr.endswith(_expected_line(path, problem, line, b""))


def test_a_bug_is_one_line_and_exit_3_and_debug_shows_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not bad input but a bug: still no traceback by default, and exit 3 (UNKNOWN), never
    the 1 of an uncaught exception, which `check` users would read as a warning."""

    def broken(*_: object, **__: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(tcphealth.pipeline, "diagnose", broken)
    path = tmp_path / "good.json"
    path.write_text(GOOD_SNAPSHOT, encoding="utf-8")
    result = run("check", "--from", path)
    assert result.exit_code == 3
    assert result.stderr == (
        "tcphealth: internal error: ZeroDivisionError: boom "
        "(a bug in tcphealth; --debug shows where)\n"
    )
    loud = run("--debug", "check", "--from", path)
    assert loud.exit_code == 3
    assert loud.stderr.startswith("Traceback (most recent call last):\n")
    assert "in broken\n" in loud.stderr and "ZeroDivisionError: boom\n" in loud.stderr


def test_huge_sparse_files_are_refused_by_size_before_reading(tmp_path: Path) -> None:
    """2 GB that take no disk space: refused by their size, never read into memory."""
    for name, limit, what in (
        ("huge.json", "1 GiB", "a snapshot (1,073,741,824 bytes)"),
        ("huge.txt", "256 MiB", "pasted text (268,435,456 bytes)"),
        ("huge", "256 MiB", "pasted text (268,435,456 bytes)"),
    ):
        path = tmp_path / name
        with open(path, "wb") as handle:
            handle.truncate(2 << 30)
        assert os.stat(path).st_blocks == 0  # sparse: the test itself costs nothing
        result = run("check", "--from", path)
        assert result.exit_code == 3
        assert result.stderr == (
            f"tcphealth: {path}: 2,147,483,648 bytes (2 GiB) is over the {limit} limit for "
            f"{what}; not read\n"
        )


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Limits of 1 MiB, so a stream past them costs a megabyte, not 256 MiB."""
    monkeypatch.setattr(sources, "TEXT_LIMIT", reading.Limit(1 << 20, "pasted text"))
    monkeypatch.setattr(snapshot_file, "SNAPSHOT_LIMIT", reading.Limit(2 << 20, "a snapshot"))


@pytest.mark.usefixtures("small_limits")
def test_streams_of_unknown_size_stop_at_the_limit() -> None:
    text_over = "x" * ((1 << 20) + 1)
    result = run("check", "--from", "-", stdin=text_over)
    assert result.exit_code == 3
    assert result.stderr == (
        "tcphealth: <stdin>: over the 1 MiB limit for pasted text (1,048,576 bytes); "
        "stopped reading there\n"
    )
    # What starts like a snapshot may be as large as a snapshot file ...
    json_over = "{" + " " * (2 << 20)
    result = run("check", "--from", "-", stdin=json_over)
    assert result.stderr == (
        "tcphealth: <stdin>: over the 2 MiB limit for a snapshot (2,097,152 bytes); "
        "stopped reading there\n"
    )
    # ... and a device that never ends is read only up to the limit.
    result = run("check", "--from", "/dev/zero")
    assert result.exit_code == 3
    assert result.stderr == (
        "tcphealth: /dev/zero: over the 1 MiB limit for pasted text (1,048,576 bytes); "
        "stopped reading there\n"
    )


def test_real_stdin_that_never_ends_is_refused_not_read_forever() -> None:
    """A real file descriptor, not CliRunner's buffer: `tcphealth --from - < /dev/zero`."""
    code = (
        "import tcphealth.sources as s, tcphealth.reading as r; "
        "s.TEXT_LIMIT = r.Limit(1 << 20, 'pasted text'); "
        "from tcphealth.cli import main; main(['check', '--from', '-'])"
    )
    with open("/dev/zero", "rb") as zero:
        done = subprocess.run(
            [sys.executable, "-c", code],
            stdin=zero,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
    assert done.returncode == 3
    assert done.stderr == (
        "tcphealth: <stdin>: over the 1 MiB limit for pasted text (1,048,576 bytes); "
        "stopped reading there\n"
    )


def test_empty_stdin() -> None:
    result = run("check", "--from", "-", stdin="")
    assert (result.exit_code, result.stderr) == (
        3,
        "tcphealth: <stdin>: empty (0 bytes): nothing to read\n",
    )


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_proc_copy_crlf_and_extra_columns_and_unknown_state_parse(
    tmp_path: Path, newline: str
) -> None:
    extra = PROC_ROW.replace("   0:", "   1:").replace("0016", "0017").replace("12345", "12346")
    unknown = PROC_ROW.replace("   0:", "   2:").replace(" 0A ", " 4C ").replace("12345", "12347")
    extra += " extra columns"
    path = tmp_path / "tcp.txt"
    path.write_bytes(proc_copy(PROC_ROW, extra, unknown, newline=newline).encode())
    result = run("sockets", "--from", path)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        LISTEN_LINE,
        LISTEN_LINE.replace(":22 ", ":23 ").replace("12345", "12346"),
        LISTEN_LINE.replace("LISTEN ", "UNKNOWN ").replace("12345", "12347"),
    ]
    document = json.loads(run("sockets", "--from", path, "--format", "json").stdout)
    assert [sock["raw_state"] for sock in document["sockets"]] == [None, None, "4C"]


def test_crlf_snapshot_and_crlf_paste_read_as_the_lf_ones(tmp_path: Path) -> None:
    for name, text in (("snap.json", GOOD_SNAPSHOT), ("ss.txt", SS_TEXT)):
        lf, crlf = tmp_path / f"lf-{name}", tmp_path / f"crlf-{name}"
        lf.write_bytes(text.encode())
        crlf.write_bytes(text.replace("\n", "\r\n").encode())
        expected = run("sockets", "--from", lf)
        assert expected.exit_code == 0 and expected.stdout
        assert run("sockets", "--from", crlf).stdout == expected.stdout


def test_a_paste_with_some_broken_lines_is_diagnosed_with_a_counted_warning(
    tmp_path: Path,
) -> None:
    path = tmp_path / "partial.txt"
    path.write_text(
        SS_TEXT + "ESTAB x 0 10.0.0.1:8080 10.0.0.2:5555\nCLOSE-WAIT 1 zz 10.0.0.1:8080 "
        "10.0.0.3:5557\n",
        encoding="utf-8",
    )
    result = run("check", "--from", path)
    assert result.exit_code == 2  # the full accept queue is still found
    assert result.stdout.startswith("CRITICAL code=listen-queue-full ")
    assert result.stderr.splitlines() == [
        f"tcphealth: note: {path}:4: line skipped: Recv-Q 'x' is not a number",
        f"tcphealth: note: {path}:5: line skipped: Send-Q 'zz' is not a number",
        "tcphealth: warning: 2 input lines looked like socket rows but could not be read; the "
        "diagnosis leaves them out (--strict refuses such input)",
        "tcphealth: check: 1 critical, 0 warning, 1 info (--fail-on warning): exit 2",
    ]
    document = json.loads(run("--from", path, "--format", "json").stdout)
    assert document["summary"]["skipped_lines"] == 2
    table = (
        CliRunner()
        .invoke(main, ["--from", str(path), "--format", "table"], env={"COLUMNS": "120"})
        .stdout
    )
    assert (
        "\n2 input lines could not be read and were left out (the notes on stderr name them)\n"
        in (table)
    )
    strict = run("check", "--from", path, "--strict")
    assert strict.exit_code == 3
    assert strict.stderr == (
        f"tcphealth: {path}:4: line skipped: Recv-Q 'x' is not a number: "
        "'ESTAB x 0 10.0.0.1:8080 10.0.0.2:5555'\n"
    )


def test_a_proc_copy_with_one_broken_row_among_good_ones(tmp_path: Path) -> None:
    path = tmp_path / "tcp.txt"
    path.write_text(proc_copy(PROC_ROW, "   1: 0100007F:0017 00000000:0000 0A"), encoding="utf-8")
    result = run("sockets", "--from", path)
    assert result.exit_code == 0
    assert result.stdout == LISTEN_LINE + "\n"
    assert result.stderr.splitlines() == [
        f"tcphealth: note: {path}:3: line skipped: 4 columns, at least 10 expected",
        "tcphealth: warning: 1 input line looked like socket rows but could not be read; the "
        "diagnosis leaves them out (--strict refuses such input)",
    ]


def test_directories(tmp_path: Path) -> None:
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    result = run("check", "--from", empty)
    assert (result.exit_code, result.stderr) == (
        3,
        f"tcphealth: {empty}/net/tcp: does not exist\n",
    )
    forced = run("check", "--from", empty, "--input-format", "ss")
    assert forced.stderr == f"tcphealth: {empty}: a directory, not ss output\n"
    with pytest.raises(InputError, match=r"a directory, not a file"):
        reading.read_input(empty, None, sources.TEXT_LIMIT)


def test_a_copied_proc_tree_with_hostile_files(tmp_path: Path) -> None:
    """A copied /proc from a stranger: a named pipe for a process file, garbage in status,
    a bogus fd link, a huge sparse table. Nothing hangs, nothing raises."""
    root = tmp_path / "proc"
    (root / "net").mkdir(parents=True)
    (root / "net" / "tcp").write_text(proc_copy(PROC_ROW), encoding="utf-8")
    process = root / "4242"
    (process / "fd").mkdir(parents=True)
    os.symlink("socket:[12345]", process / "fd" / "3")
    os.symlink("socket:[not-a-number]", process / "fd" / "4")
    os.mkfifo(process / "comm")  # read without waiting: no name
    (process / "status").write_text("Name:\tx\nUid:\tgarbage\n", encoding="utf-8")
    result = run("sockets", "--from", root)
    assert result.exit_code == 0, result.stderr
    assert (
        result.stdout
        == LISTEN_LINE.replace("pid=- ", "pid=4242 ").replace("owner=unknown", "owner=fd") + "\n"
    )
    (root / "net" / "tcp").unlink()
    os.mkfifo(root / "net" / "tcp")
    assert run("check", "--from", root).stderr == (
        f"tcphealth: {root}/net/tcp: not a regular file\n"
    )
    (root / "net" / "tcp").unlink()
    with open(root / "net" / "tcp", "wb") as handle:
        handle.truncate(2 << 30)
    assert run("check", "--from", root).stderr == (
        f"tcphealth: {root}/net/tcp: 2,147,483,648 bytes is over the limit of 268,435,456 "
        "bytes for a TCP table; not read\n"
    )


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pipe.txt"
    os.mkfifo(path)
    yield path


def test_a_named_pipe_nobody_writes_to_reads_as_empty(fifo: Path, tmp_path: Path) -> None:
    json_fifo = tmp_path / "pipe.json"
    os.mkfifo(json_fifo)
    for path in (fifo, json_fifo):
        result = run("check", "--from", path)
        assert (result.exit_code, result.stderr) == (
            3,
            f"tcphealth: {path}: empty (0 bytes): nothing to read\n",
        )


def test_a_named_pipe_with_a_writer_is_read(fifo: Path) -> None:
    """What `--from <(ssh host ss -tanp)` gives: a pipe, read to its end."""
    written = threading.Event()
    thread_ids: list[int] = []

    def writer() -> None:
        thread_ids.append(threading.get_native_id())
        with open(fifo, "w", encoding="utf-8") as handle:  # waits for the reader
            handle.write(SS_TEXT)
        written.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        while not thread_ids:
            time.sleep(0.01)
        _wait_until_blocked_in_open(thread_ids[0])
        result = run("sockets", "--from", fifo)
    finally:
        # Unblock the writer if the reader never came.
        unblock = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        os.close(unblock)
        thread.join(timeout=10)
    assert written.is_set()
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("LISTEN local=0.0.0.0:8080 ")


def _wait_until_blocked_in_open(thread_id: int) -> None:
    """Until the writer waits in open() for a reader: from then on the kernel counts it as
    the pipe's writer, so the reader sees its data instead of an empty pipe."""
    deadline = time.monotonic() + 30
    wchan = Path(f"/proc/self/task/{thread_id}/wchan")
    while time.monotonic() < deadline:
        if wchan.read_text() == "wait_for_partner":
            return
        time.sleep(0.01)
    pytest.skip("cannot see the writer wait for a reader (wchan hidden on this kernel)")


@pytest.mark.skipif(not can_drop_to("nobody"), reason="needs root and a 'nobody' user")
def test_a_file_without_read_permission(tmp_path: Path) -> None:
    """Root reads any file, so the run drops to nobody; the file sits in a directory nobody
    may enter but not list, so it is the file's own mode that refuses."""
    directory = Path(tempfile.mkdtemp(prefix="tcphealth-perm-"))
    try:
        directory.chmod(0o711)
        secret = directory / "secret.json"
        secret.write_text(GOOD_SNAPSHOT, encoding="utf-8")
        secret.chmod(0o600)
        for target in (secret, secret.with_suffix(".txt")):
            if target != secret:
                target.write_text(SS_TEXT, encoding="utf-8")
                target.chmod(0o600)
            code, stdout, stderr = run_cli_as("nobody", ["check", "--from", str(target)], tmp_path)
            assert (code, stdout, stderr) == (
                3,
                "",
                f"tcphealth: {target}: Permission denied\n",
            )
    finally:
        for entry in directory.iterdir():
            entry.unlink()
        directory.rmdir()


def test_file_names_and_fields_with_escapes_stay_inert_on_stderr(tmp_path: Path) -> None:
    """The file name and a field name in the message come from a stranger."""
    path = tmp_path / "evil\x1b[2J\n.json"
    path.write_text(
        GOOD_SNAPSHOT.replace('"counters": {', '"counters": {"\\u001b]0;x\\u0007": "s", ', 1),
        encoding="utf-8",
    )
    result = run("check", "--from", path)
    assert result.exit_code == 3
    shown = str(path).replace("\x1b", "\\x1b").replace("\n", "\\n")
    assert result.stderr == (
        f"tcphealth: {shown}: snapshot.counters.\\x1b]0;x\\x07: expected an integer, got a string\n"
    )


def test_a_config_file_is_read_bounded_and_never_waited_on(tmp_path: Path) -> None:
    """--config /dev/zero read forever, a named pipe hung, a sparse 2 GB file was read whole."""
    huge = tmp_path / "huge.toml"
    with open(huge, "wb") as handle:
        handle.truncate(2 << 30)
    pipe = tmp_path / "pipe.toml"
    os.mkfifo(pipe)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert run("config", "--config", "/dev/zero").stderr == (
        "tcphealth: /dev/zero: cannot read: over the 1 MiB limit for a thresholds file "
        "(1,048,576 bytes); stopped reading there\n"
    )
    assert run("config", "--config", huge).stderr == (
        f"tcphealth: {huge}: cannot read: 2,147,483,648 bytes (2 GiB) is over the 1 MiB limit "
        "for a thresholds file (1,048,576 bytes); not read\n"
    )
    # Empty is a valid thresholds file, and so is a pipe nobody writes to: the defaults.
    for path in (pipe, empty):
        result = run("config", "--config", path)
        assert result.exit_code == 0
        assert result.stdout.startswith(f"# tcphealth thresholds: from {path}\n")
