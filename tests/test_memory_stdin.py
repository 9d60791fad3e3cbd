"""Standard input is read as it comes, as a file is (issue 26): ``cat tcp | tcphealth --from -``
never holds the whole input, whatever its format.

Each case runs tcphealth in a fresh process fed through a real pipe (``cat`` writing into it),
takes that process's own peak RSS (``wait4``), and checks it against the documented bound
(:mod:`tcphealth.bounds`) and against the peak of the same input read from its file: a reader
that held the whole input first would pay its bytes and its text on top (about 110 MiB for a
million /proc rows, measured on de6c8eb). ``make bench-memory`` measures the largest sizes
(1,000,000 rows, 300,000 sockets; benchmarks/RESULTS.md); these are smaller, and shaped so
that the text outweighs its sockets.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pytest

from benchmarks.memory import write_snapshot_file, write_table, write_transcript
from tcphealth import bounds, sources
from tcphealth.errors import InputError

REPO = Path(__file__).resolve().parent.parent
# Runs one command in a child of its own and prints that child's peak RSS and exit code. The
# probe is a fresh process so that the figure is the child's alone: Linux carries the memory
# high-water mark of a vfork()ing parent (here pytest) into the child it execs.
PROBE = """
import os, subprocess, sys
how, path, *command = sys.argv[1:]
if how == "pipe":
    cat = subprocess.Popen(["cat", path], stdout=subprocess.PIPE)
    child = subprocess.Popen(
        [*command, "--from", "-"], stdin=cat.stdout, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    cat.stdout.close()
else:
    cat = None
    child = subprocess.Popen(
        [*command, "--from", path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
stderr = child.stderr.read()
_, status, usage = os.wait4(child.pid, 0)
if cat is not None:
    cat.wait()
sys.stderr.write(stderr.decode("utf-8", "replace"))
print(usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status))
"""
# Two reads of the same input by the same code differ by a few pages; holding the input whole
# would add its bytes and its text (here 35 MB and more).
SAME_READING = 12 << 20


def peak(how: str, path: Path, *args: str) -> tuple[int, int, str]:
    """(peak RSS in bytes, exit code, stderr) of ``tcphealth ARGS --from`` ``path`` (``how``:
    ``file``) or ``-`` with ``path`` written into its standard input (``pipe``)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, how, str(path), sys.executable, "-m", "tcphealth", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
        check=True,
    )
    rss, code = done.stdout.split()
    return int(rss), int(code), done.stderr


def bound(sockets: int) -> int:
    return bounds.MEMORY_FIXED_BYTES + sockets * bounds.MEMORY_PER_SOCKET_BYTES


def _snapshot(path: Path) -> int:
    write_snapshot_file(path, 100_000)
    return 100_000


def _transcript(path: Path) -> int:
    write_transcript(path, 5000, 500_000)
    return 5000


@pytest.mark.parametrize("make", [_snapshot, _transcript])
def test_a_large_input_through_a_pipe_is_read_as_it_comes(
    tmp_path: Path, make: Callable[[Path], int]
) -> None:
    """A snapshot of 100,000 sockets (44 MB), and a transcript whose `ss -tan` shows 5,000
    sockets among 500,000 lines of `ps` (54 MB). Held whole (de6c8eb), the snapshot peaked
    at 106 MiB against 74 MiB from its file, the transcript at 124 MiB against a bound of
    102 MiB."""
    path = tmp_path / "input"
    sockets = make(path)
    assert path.stat().st_size > 40 * 10**6
    piped, code, stderr = peak("pipe", path, "check")
    assert code in (0, 1), stderr
    assert stderr.splitlines()[-1].endswith(f": exit {code}")
    assert piped <= bound(sockets), (piped, bound(sockets))
    from_file, file_code, _ = peak("file", path, "check")
    assert file_code == code
    assert piped <= from_file + SAME_READING, (piped, from_file)


def test_a_pipe_past_the_text_limit_is_refused_where_it_passes_it(tmp_path: Path) -> None:
    """The limit is the same through a pipe, counted as the text comes, with the same one line
    a file over it gets -- but for the size, which a pipe does not tell beforehand."""
    path = tmp_path / "tcp"
    write_table(path, 100)
    code = (
        "import sys, tcphealth.sources as s, tcphealth.reading as r; "
        "s.TEXT_LIMIT = r.Limit(8000, 'pasted text'); "
        "from tcphealth.cli import main; main(sys.argv[1:])"
    )
    with path.open("rb") as handle:
        cat = subprocess.Popen(["cat"], stdin=handle, stdout=subprocess.PIPE)
        assert cat.stdout is not None
        done = subprocess.run(
            [sys.executable, "-c", code, "check", "--from", "-"],
            stdin=cat.stdout,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        cat.stdout.close()
        cat.wait()
    assert (done.returncode, done.stderr) == (
        3,
        "tcphealth: <stdin>: over the 7.81 KiB limit for pasted text (8,000 bytes); "
        "stopped reading there\n",
    )


def _read(path: Path | str, stdin: IO[str] | None, name: str) -> Any:
    """What ``load_series`` makes of the input, with its name written as ``NAME``."""
    try:
        snapshots = sources.load_series(path, stdin)
    except InputError as error:
        return ("error", str(error).replace(name, "NAME"))
    return [
        (
            snap.sockets,
            snap.processes,
            snap.skipped_lines,
            tuple(note.replace(name, "NAME") for note in snap.notes),
            snap.host.source.replace(name, "NAME"),
            snap.state_counts,
        )
        for snap in snapshots
    ]


def _as_stdin(data: bytes) -> io.TextIOWrapper:
    """Standard input holding ``data``, read by tcphealth through its bytes, as sys.stdin is."""
    return io.TextIOWrapper(io.BufferedReader(io.BytesIO(data)), encoding="utf-8")


def test_every_format_reads_the_same_from_standard_input_as_from_its_file(tmp_path: Path) -> None:
    """Every paste, /proc copy, snapshot and series of fixtures/, and a few made here (UTF-16,
    a first line longer than the look at the head, blank space first, not UTF-8, empty):
    standard input gives the same sockets, notes and errors as the file -- read as it
    comes by the same readers."""
    realworld = REPO / "fixtures" / "realworld"
    windows = next(realworld.glob("*windows*")).read_bytes()
    made = {
        "utf16.txt": windows.decode("utf-8").encode("utf-16"),
        "long-first-line.txt": b"# "
        + b"x" * 100_000
        + b"\n"
        + next(realworld.glob("*_ss_*")).read_bytes(),
        "blank-first.txt": b"\n \r\n\t" * 20_000 + windows,
        "not-utf8.json": b'{"format": "tcphealth.snapshot", "x": "\xff"}',
        "empty": b"",
        "blank": b"  \n\n",
    }
    for name, data in made.items():
        (tmp_path / name).write_bytes(data)
    inputs = sorted((REPO / "fixtures").glob("*.json"))
    inputs += sorted((REPO / "fixtures" / "series").glob("*.json"))
    inputs += sorted((REPO / "fixtures" / "realworld").glob("*.txt"))
    inputs += sorted((REPO / "fixtures" / "realworld" / "threads").glob("*.txt"))
    inputs += [tmp_path / name for name in made]
    assert len(inputs) > 50
    kinds: Counter[str] = Counter()
    for path in inputs:
        expected = _read(path, None, str(path))
        kinds[expected[0] if isinstance(expected, tuple) else "read"] += 1
        got = _read("-", _as_stdin(path.read_bytes()), "<stdin>")
        assert got == expected, path.name
    assert kinds["error"] >= 3 and kinds["read"] > 40  # both kinds compared
