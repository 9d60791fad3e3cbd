"""A seeded, time-bounded mutation fuzz of every input tcphealth reads from strangers (issue 26).

Seeds are the captures in fixtures/ (snapshots, series, ss and netstat pastes of three
systems, /proc tables); each round mutates one -- a field set to a hostile number, a token
replaced, a line duplicated or cut -- or builds a /proc tree (symlink loops, non-ASCII digits,
unreadable files, huge command lines) or a thresholds file. Each input is read as the CLI reads
it, and the run fails on:

- an internal error (the "a bug in tcphealth" line), or an exit code other than 0 and 3;
- a value in the JSON report outside its range (a port over 65535, a pid of 0, a negative
  queue, a command line longer than its cap);
- the process's peak RSS, above what it was at the start, over :func:`rss_bound` (the
  README's fixed cost and rate per socket, for the largest report the fuzz made).

``python -m tests.hostile_fuzz --seconds 600`` (``make fuzz``) is the long run; the suite runs
a few seconds of it (tests/test_hostile_fuzz.py).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tcphealth import bounds
from tcphealth.cli import main
from tcphealth.sources import procfs

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"


def rss_bound(sockets: int) -> int:
    """The README's bound for a run that reads ``sockets`` sockets: the fixed cost plus the
    documented rate for each. The fuzz's inputs are small, so a run near it is memory
    growing with something other than the input."""
    return bounds.MEMORY_FIXED_BYTES + bounds.MEMORY_PER_SOCKET_BYTES * sockets


HOSTILE_INTS = [
    -1,
    0,
    -(2**63) - 1,
    2**16,
    1194859,
    2**32,
    2**64,
    -16777216,
    10**5000,
]
HOSTILE_TOKENS = [
    "-1",
    "²",
    "٣",
    "1_0",
    "+7",
    "F" * 5000,
    "9" * 5000,
    "nan",
    "inf",
    "::1",
    "999.1.1.1:99999",
    "pid=0",
    "pid=-1",
    'users:(("x",pid=0,fd=1))',
    "\x1b[2J",
    "\udcff",
    "",
]
THRESHOLD_VALUES = [
    "nan",
    "+nan",
    "-nan",
    "inf",
    "-inf",
    "0",
    "0.0",
    "-1",
    "1e309",
    "true",
    '"10"',
    "[1]",
    "{a=1}",
    "99999999999999999999",
    "1",
    "0.5",
    "3",
]


@dataclass
class Outcome:
    rounds: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_exit: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    peak_rss: int = 0  # above the RSS the fuzz started at
    most_sockets: int = 0  # in any one report


def _seeds() -> dict[str, list[Path]]:
    pastes = sorted((FIXTURES / "realworld").glob("*.txt"))
    pastes += sorted((FIXTURES / "realworld" / "threads").glob("*.txt"))
    return {
        "snapshot": sorted(FIXTURES.glob("*.json")),
        "series": sorted((FIXTURES / "series").glob("*.json")),
        "paste": pastes,
    }


def _mutate_json(value: Any, rng: random.Random) -> Any:
    """One leaf of the document replaced with a hostile value."""
    if isinstance(value, dict) and value:
        key = rng.choice(sorted(value))
        value[key] = _mutate_json(value[key], rng)
        return value
    if isinstance(value, list) and value:
        index = rng.randrange(len(value))
        value[index] = _mutate_json(value[index], rng)
        return value
    if isinstance(value, bool) or value is None:
        return rng.choice([value, -1, 0, "x"])
    if isinstance(value, int | float):
        return rng.choice([*HOSTILE_INTS, -0.5, 1e308])
    if isinstance(value, str):
        return rng.choice(["::1", "10.0.0.1", "ipv6", "ipv4", "", "²", value * 3])
    return value


def _mutate_text(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True) or [""]
    for _ in range(rng.randint(1, 4)):
        index = rng.randrange(len(lines))
        line = lines[index]
        choice = rng.random()
        if choice < 0.6 and line.split():
            words = line.split(" ")
            spot = rng.randrange(len(words))
            words[spot] = rng.choice(HOSTILE_TOKENS)
            lines[index] = " ".join(words)
        elif choice < 0.8:
            lines.insert(index, line)
        else:
            cut = rng.randrange(len(line) + 1)
            lines[index] = line[:cut] + "\n"
    return "".join(lines)


def _proc_row(rng: random.Random) -> str:
    def hexes(width: int) -> str:
        if rng.random() < 0.03:  # one field in 30: most rows stay readable, some do not
            return rng.choice(HOSTILE_TOKENS) or "0"
        return f"{rng.getrandbits(width * 4):0{width}X}"

    return (
        f"   {rng.randrange(10)}: {hexes(8)}:{hexes(4)} {hexes(8)}:{hexes(4)} {hexes(2)} "
        f"{hexes(8)}:{hexes(8)} {hexes(2)}:{hexes(8)} {hexes(8)} {rng.choice(['0', '1000', '-1'])}"
        f" 0 {rng.choice(['0', '777', '12345', '٣', '-5'])} 1 0000000000000000 20 4 0 10 -1\n"
    )


def _proc_tree(directory: Path, rng: random.Random) -> Path:
    root = directory / "proc"
    (root / "net").mkdir(parents=True)
    header = procfs_header()
    rows = "".join(_proc_row(rng) for _ in range(rng.randint(1, 6)))
    (root / "net" / "tcp").write_bytes((header + rows).encode("utf-8", "surrogateescape"))
    for number in range(rng.randint(1, 4)):
        name = rng.choice(["4242", "1", "²", "٣", "0", "99999999999999999999", str(100 + number)])
        process = root / name
        if process.exists() or process.is_symlink():
            continue
        kind = rng.random()
        if kind < 0.15:
            os.symlink(name, process)  # a loop
            continue
        (process / "fd").mkdir(parents=True)
        if kind < 0.3:
            shutil.rmtree(process / "fd")
            os.symlink("fd", process / "fd")
        else:
            for fd in range(rng.randint(0, 3)):
                target = rng.choice(["socket:[777]", "socket:[12345]", "socket:[٣]", "socket:[²]"])
                os.symlink(target, process / "fd" / str(fd))
        if rng.random() < 0.5:
            size = rng.choice([10, 5000, 300_000])
            (process / "cmdline").write_bytes(b"server\0" + b"a\xff" * size + b"\0")
        if rng.random() < 0.3:
            (process / "comm").write_text("c" * rng.choice([5, 100_000]), encoding="utf-8")
        if rng.random() < 0.3:
            (process / "status").write_text("Uid:\t" + rng.choice(["-1", "²", "4294967295"]))
        if rng.random() < 0.2:
            (process / "limits").write_bytes(b"")
            os.chmod(process / "limits", 0)
    return root


def procfs_header() -> str:
    return (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode\n"
    )


def _thresholds(rng: random.Random) -> str:
    from tcphealth.diagnose.config import threshold_help

    keys = list(threshold_help())
    choice = rng.random()
    if choice < 0.1:
        return "[thresholds]\nx = " + "[" * rng.choice([20, 5000]) + "\n"
    if choice < 0.2:
        return "[thresholds]\n" + "a." * rng.choice([20, 50_000]) + "b = 1\n"
    lines = ["[thresholds]"]
    for _ in range(rng.randint(1, 4)):
        lines.append(f"{rng.choice(keys)} = {rng.choice(THRESHOLD_VALUES)}")
    return "\n".join(lines) + "\n"


# --- what the output may hold -----------------------------------------------------------------


def _port_ok(text: str | None) -> bool:
    if text is None:
        return True
    port = text.rpartition(":")[2]
    return port == "*" or (port.isascii() and port.isdigit() and 0 <= int(port) <= 65535)


def out_of_range(document: dict[str, Any]) -> list[str]:
    """Every value of a JSON report outside its range, described."""
    problems: list[str] = []
    for index, sock in enumerate(document.get("sockets", [])):
        where = f"sockets[{index}]"
        for name in ("local", "remote"):
            if not _port_ok(sock.get(name)):
                problems.append(f"{where}.{name} = {sock.get(name)!r}")
        problems += [f"{where}.pids has {pid}" for pid in sock.get("pids", []) if pid < 1]
        for name in ("send_queue", "recv_queue", "listen_backlog", "retransmits", "probes"):
            value = sock.get(name)
            if value is not None and not 0 <= value < 2**32:
                problems.append(f"{where}.{name} = {value}")
        for name, high in (("uid", 2**32 - 1), ("inode", 2**64)):
            value = sock.get(name)
            if value is not None and not 0 <= value < high:
                problems.append(f"{where}.{name} = {value}")
        seconds = sock.get("timer_seconds")
        if seconds is not None and not 0 <= seconds <= 1e9:
            problems.append(f"{where}.timer_seconds = {seconds}")
    for index, process in enumerate(document.get("processes", [])):
        where = f"processes[{index}]"
        if process.get("pid", 1) < 1:
            problems.append(f"{where}.pid = {process['pid']}")
        uid = process.get("uid")
        if uid is not None and not 0 <= uid < 2**32 - 1:
            problems.append(f"{where}.uid = {uid}")
        cmdline = process.get("cmdline") or []
        if sum(map(len, cmdline)) > procfs.MAX_CMDLINE_CHARS + len(procfs.CUT_MARK):
            problems.append(f"{where}.cmdline is {sum(map(len, cmdline)):,} characters")
        name = process.get("name") or ""
        if len(name) > procfs.MAX_NAME_CHARS + len(procfs.CUT_MARK):
            problems.append(f"{where}.name is {len(name):,} characters")
    return problems


# --- one round --------------------------------------------------------------------------------


def _check_run(args: list[str], outcome: Outcome, kind: str, describe: str) -> None:
    result = CliRunner().invoke(main, args)
    outcome.by_exit[int(result.exit_code)] += 1
    if "internal error" in result.stderr or result.exit_code not in (0, 1, 2, 3):
        outcome.failures.append(f"{kind} ({describe}): exit {result.exit_code}: {result.stderr}")
        return
    said = [
        line
        for line in result.stderr.splitlines()
        if not line.startswith(("tcphealth: note:", "tcphealth: warning:"))
    ]
    if result.exit_code == 3 and len(said) != 1:
        outcome.failures.append(f"{kind} ({describe}): not one line: {result.stderr!r}")
    if result.exit_code == 0 and "json" in args:
        try:
            document = json.loads(result.stdout)
        except ValueError as error:
            outcome.failures.append(f"{kind} ({describe}): output not JSON: {error}")
            return
        if isinstance(document, dict) and isinstance(document.get("sockets"), list):
            outcome.most_sockets = max(outcome.most_sockets, len(document["sockets"]))
        for problem in out_of_range(document):
            outcome.failures.append(f"{kind} ({describe}): {problem}")


def fuzz_round(rng: random.Random, directory: Path, outcome: Outcome) -> None:
    seeds = _seeds()
    kind = rng.choice(["snapshot", "series", "paste", "proc-table", "proc-tree", "thresholds"])
    outcome.by_kind[kind] += 1
    outcome.rounds += 1
    work = Path(tempfile.mkdtemp(dir=directory))
    try:
        if kind in ("snapshot", "series"):
            seed = rng.choice(seeds[kind])
            document = json.loads(seed.read_text(encoding="utf-8"))
            for _ in range(rng.randint(1, 3)):
                document = _mutate_json(document, rng)
            path = work / "input.json"
            try:
                path.write_bytes(json.dumps(document).encode("utf-8", "surrogateescape"))
            except ValueError:  # a 5,000-digit number json will not write
                path.write_text(seed.read_text(encoding="utf-8"), encoding="utf-8")
            _check_run(
                ["sockets", "--format", "json", "--from", str(path)], outcome, kind, seed.name
            )
        elif kind == "paste":
            seed = rng.choice(seeds["paste"])
            text = _mutate_text(seed.read_text(encoding="utf-8", errors="surrogateescape"), rng)
            path = work / "paste.txt"
            path.write_bytes(text.encode("utf-8", "surrogateescape"))
            _check_run(
                ["sockets", "--format", "json", "--from", str(path)], outcome, kind, seed.name
            )
        elif kind == "proc-table":
            path = work / "tcp"
            rows = "".join(_proc_row(rng) for _ in range(rng.randint(1, 8)))
            path.write_bytes((procfs_header() + rows).encode("utf-8", "surrogateescape"))
            _check_run(["sockets", "--format", "json", "--from", str(path)], outcome, kind, "rows")
        elif kind == "proc-tree":
            root = _proc_tree(work, rng)
            _check_run(["sockets", "--format", "json", "--from", str(root)], outcome, kind, "tree")
        else:
            path = work / "t.toml"
            path.write_text(_thresholds(rng), encoding="utf-8")
            fixture = str(rng.choice(seeds["snapshot"]))
            _check_run(["check", "--from", fixture, "--config", str(path)], outcome, kind, "toml")
            _check_run(["config", "--format", "json", "--config", str(path)], outcome, kind, "cfg")
    finally:
        for path in work.rglob("*"):  # chmod 0 files must be removable by a non-root user too
            if not path.is_symlink():
                os.chmod(path, 0o700)
        shutil.rmtree(work, ignore_errors=True)


def fuzz(seed: int, seconds: float, *, max_rounds: int | None = None) -> Outcome:
    """Rounds until ``seconds`` pass (or ``max_rounds``), from ``seed``; then the peak RSS."""
    rng = random.Random(seed)
    outcome = Outcome()
    start = _rss_from_now()
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory(prefix="tcphealth-fuzz-") as directory:
        while time.monotonic() < deadline and (max_rounds is None or outcome.rounds < max_rounds):
            fuzz_round(rng, Path(directory), outcome)
            # One CLI run is one process; thousands share this one. Their cyclic garbage
            # (click contexts, tracebacks), left in the oldest generation by gcpause, would
            # otherwise wait for a rare full collection and count against the bound: a
            # 420 s run grew to 1.8 GiB without this, and stays under 30 MiB with it.
            gc.collect()
    outcome.peak_rss = _peak_rss() - start
    bound = rss_bound(outcome.most_sockets)
    if outcome.peak_rss > bound:
        outcome.failures.append(
            f"peak RSS {outcome.peak_rss:,} bytes above the start is over {bound:,} "
            f"(the bound for {outcome.most_sockets:,} sockets)"
        )
    return outcome


def _rss_from_now() -> int:
    """The RSS now, with the process's peak reset to it where Linux allows (writing 5 to
    /proc/self/clear_refs), so that the peak measured after the fuzz is the fuzz's own and
    not that of tests run before it in the same process. Where it cannot be reset, 0: the
    lifetime peak is then counted whole, which only makes the bound stricter."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return _status_bytes("VmRSS")
    except OSError:
        return 0


def _peak_rss() -> int:
    try:
        return _status_bytes("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _status_bytes(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        fields = dict(line.split(":", 1) for line in handle if ":" in line)
    return int(fields[key].split()[0]) * 1024


def _main(argv: list[str] | None = None, report: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--seconds", type=float, default=600)
    options = parser.parse_args(argv)
    outcome = fuzz(options.seed, options.seconds)
    report(
        f"seed {options.seed}: {outcome.rounds:,} inputs in {options.seconds:g} s; "
        f"by kind {dict(sorted(outcome.by_kind.items()))}; "
        f"by exit code {dict(sorted(outcome.by_exit.items()))}; "
        f"peak RSS {outcome.peak_rss / (1 << 20):.0f} MiB above the start "
        f"(bound {rss_bound(outcome.most_sockets) / (1 << 20):.0f} MiB for "
        f"{outcome.most_sockets:,} sockets); {len(outcome.failures)} failure(s)"
    )
    for failure in outcome.failures[:20]:
        report(f"  {failure[:500]}")
    return 1 if outcome.failures else 0


if __name__ == "__main__":
    raise SystemExit(_main())
