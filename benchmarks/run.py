"""The scale benchmark: tcphealth against ss, netstat, lsof and psutil on the same sockets.

    make bench N=100000          # or: python -m benchmarks.run --sockets 100000

1. Starts the load generator (``benchmarks.loadgen``) with N loopback sockets and waits until
   it is ready.
2. Checks that tcphealth's per-state counts agree with ``ss -tan`` taken right before and right
   after it, for the generator's sockets (LISTEN, ESTABLISHED, CLOSE_WAIT, FIN_WAIT2 exactly;
   TIME_WAIT churns and is reported apart), and that no socket appears twice.
3. Times every command in interleaved rounds (each command once per round, the order rotated
   each round): wall time and peak RSS of the process, read with ``wait4``. Prints the medians,
   the ratios of each tcphealth variant to each other tool, and the targets met or missed.
4. Stops the generator by its pid, also on failure or Ctrl-C.

A tool that is not installed is reported as missing (``make bench-deps`` installs net-tools
and lsof) and left out; nothing else is skipped.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import functools
import json
import os
import platform
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import loadgen
from benchmarks.sstable import STABLE_STATES, Row, count_states, is_loopback, owned_by, run_ss
from tcphealth.model import TcpState

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
COMMAND_TIMEOUT = 900.0  # seconds; netstat -tanp takes about 30 s at 300k sockets here
PSUTIL_SNIPPET = "import psutil; psutil.net_connections(kind='tcp')"


@dataclass(frozen=True)
class Tool:
    name: str
    argv: tuple[str, ...]
    tcphealth: bool = False  # one of the variants under test, as opposed to a reference


@dataclass
class Sample:
    wall: float  # seconds
    max_rss_kib: int | None  # None without GNU time
    cpu: float | None  # user + system seconds; None without GNU time
    exit_code: int


@dataclass
class Result:
    tool: Tool
    samples: list[Sample] = field(default_factory=list)
    failure: str | None = None

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def max_rss_mib(self) -> float | None:
        values = [s.max_rss_kib for s in self.samples if s.max_rss_kib is not None]
        return statistics.median(values) / 1024 if values else None

    @property
    def cpu(self) -> float | None:
        values = [s.cpu for s in self.samples if s.cpu is not None]
        return statistics.median(values) if values else None


# --- which commands --------------------------------------------------------------------------


def _tcphealth_has_report(tcphealth: str) -> bool:
    """Whether this tcphealth has the full report (``--format``), or only the skeleton."""
    result = subprocess.run([tcphealth, "--help"], capture_output=True, text=True, timeout=60)
    return "--format" in result.stdout


def tcphealth_tools(tcphealth: str) -> list[Tool]:
    if _tcphealth_has_report(tcphealth):
        return [
            Tool("tcphealth plain", (tcphealth, "--format", "plain"), tcphealth=True),
            Tool("tcphealth json", (tcphealth, "--format", "json"), tcphealth=True),
            Tool("tcphealth --no-processes", (tcphealth, "--no-processes"), tcphealth=True),
        ]
    # Stand-ins until the report is merged: the skeleton's one-line summary, and the full
    # snapshot as JSON.
    return [
        Tool("tcphealth (skeleton)", (tcphealth,), tcphealth=True),
        Tool("tcphealth snapshot", (tcphealth, "snapshot"), tcphealth=True),
        Tool("tcphealth --no-processes", (tcphealth, "--no-processes"), tcphealth=True),
    ]


def reference_tools(python: str) -> tuple[list[Tool], list[str]]:
    """The tools to compare with, and a note for each one that is missing."""
    wanted = [
        ("ss -tan", ("ss", "-tan"), "iproute2"),
        ("ss -tanp", ("ss", "-tanp"), "iproute2"),
        ("netstat -tanp", ("netstat", "-tanp"), "net-tools"),
        ("lsof -nP -iTCP", ("lsof", "-nP", "-iTCP"), "lsof"),
    ]
    tools: list[Tool] = []
    missing: list[str] = []
    for name, argv, package in wanted:
        path = shutil.which(argv[0])
        if path is None:
            missing.append(f"{name}: {argv[0]} is not installed (apt-get install {package})")
            continue
        tools.append(Tool(name, (path, *argv[1:])))
    probe = subprocess.run([python, "-c", "import psutil"], capture_output=True, timeout=60)
    if probe.returncode == 0:
        tools.append(Tool("psutil net_connections", (python, "-c", PSUTIL_SNIPPET)))
    else:
        missing.append(f"psutil net_connections: psutil is not importable by {python}")
    return tools, missing


# --- one measured run ------------------------------------------------------------------------


# GNU time forks the command from its own small process, so the peak it reports is the
# command's alone. wait4 on a child of this runner would not do: a child spawned by vfork or
# posix_spawn execs from this process's memory map, and Linux carries that map's high-water
# mark into the child's ru_maxrss -- every tool would show at least the runner's peak.
GNU_TIME = "/usr/bin/time"
_TIME_FORMAT = "bench-rusage %x %M %U %S"


def gnu_time() -> str | None:
    if not os.access(GNU_TIME, os.X_OK):
        return None
    probe = subprocess.run([GNU_TIME, "--version"], capture_output=True, text=True, timeout=10)
    return GNU_TIME if "GNU" in probe.stdout + probe.stderr else None


def measure(
    argv: Sequence[str], time_command: str | None, timeout: float = COMMAND_TIMEOUT
) -> tuple[Sample, str]:
    """Run ``argv`` with stdout to /dev/null (so tcphealth sees a pipe, not a terminal) and
    return its wall time, peak RSS and CPU time, and the tail of its stderr. The wall time is
    taken here, around the whole run; peak RSS and CPU come from GNU time where installed."""
    with tempfile.TemporaryFile() as stderr, tempfile.NamedTemporaryFile("r") as rusage:
        command = list(argv)
        if time_command is not None:
            command = [time_command, "-o", rusage.name, "-f", _TIME_FORMAT, *command]
        start = time.perf_counter()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
        )
        # A blocking wait: Popen.wait(timeout=...) polls with sleeps of up to 50 ms, which
        # would round every time up to the next poll. A watchdog kills (only) this pid if it
        # overruns.
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        try:
            process.wait()
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - start
        stderr.seek(0)
        tail = stderr.read()[-2000:].decode("utf-8", "replace")
        exit_code = process.returncode
        max_rss_kib: int | None = None
        cpu: float | None = None
        for line in rusage.read().splitlines():
            if line.startswith("bench-rusage "):
                _, code, rss, user, system = line.split()
                exit_code, max_rss_kib, cpu = int(code), int(rss), float(user) + float(system)
    return Sample(wall=wall, max_rss_kib=max_rss_kib, cpu=cpu, exit_code=exit_code), tail


def run_rounds(tools: list[Tool], rounds: int, time_command: str | None) -> list[Result]:
    results = {tool.name: Result(tool) for tool in tools}
    for round_index in range(rounds):
        shift = round_index % len(tools)
        order = tools[shift:] + tools[:shift]
        print(f"round {round_index + 1}/{rounds}:", end="", flush=True)
        for tool in order:
            result = results[tool.name]
            if result.failure is not None:
                continue
            sample, stderr = measure(tool.argv, time_command)
            # tcphealth exits 1 or 2 when it finds a problem; that is a result, not a failure.
            allowed = (0, 1, 2) if tool.tcphealth else (0,)
            if sample.exit_code not in allowed:
                result.failure = f"exit code {sample.exit_code}: {stderr.strip()[-300:]}"
                print(f" {tool.name}=FAILED", end="", flush=True)
                continue
            result.samples.append(sample)
            print(f" {tool.name}={sample.wall:.2f}s", end="", flush=True)
        print(flush=True)
    return [results[tool.name] for tool in tools]


# --- the count check -------------------------------------------------------------------------


@dataclass
class CountCheck:
    """Per-state counts of the generator's sockets: ``ss -tan`` right before, tcphealth's
    snapshot, tcphealth's JSON report (filtered to the generator's ports; None where this
    tcphealth has no report), ``ss -tan`` right after."""

    states: list[str]
    ss_before: dict[str, int]
    snapshot: dict[str, int]
    report: dict[str, int] | None
    ss_after: dict[str, int]
    host_snapshot: dict[str, int]
    duplicates: int
    sockets_seen: int

    def columns(self) -> list[tuple[str, dict[str, int]]]:
        columns = [("ss before", self.ss_before), ("snapshot", self.snapshot)]
        if self.report is not None:
            columns.append(("report", self.report))
        return [*columns, ("ss after", self.ss_after)]

    @property
    def stable_agree(self) -> bool:
        return all(
            len({column.get(s.value, 0) for _, column in self.columns()}) == 1
            for s in STABLE_STATES
        )


@functools.cache
def _this_netns(tcphealth: str) -> tuple[str, ...]:
    """``--netns self`` where this tcphealth reads every namespace by default: the counts are
    checked against ``ss -tan``, which reads the caller's namespace alone."""
    result = subprocess.run([tcphealth, "--help"], capture_output=True, text=True, timeout=60)
    return ("--netns", "self") if "'self'" in result.stdout else ()


def _snapshot_rows(tcphealth: str) -> list[dict[str, Any]]:
    """Every socket ``tcphealth snapshot`` (the default live source, with processes) sees."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "snapshot.json"
        subprocess.run(
            [tcphealth, "snapshot", "-o", str(path), *_this_netns(tcphealth)],
            check=True,
            stderr=subprocess.DEVNULL,
            timeout=COMMAND_TIMEOUT,
        )
        with path.open(encoding="utf-8") as handle:
            document = json.load(handle)
    sockets: list[dict[str, Any]] = document["snapshot"]["sockets"]
    return sockets


def _report_counts(tcphealth: str, ports: frozenset[int]) -> dict[str, int]:
    """The per-state counts in the summary of ``tcphealth --format json``, narrowed with
    ``--port`` to the sockets with one end on a generator port."""
    argv = [tcphealth, "--format", "json", *_this_netns(tcphealth)]
    for port in sorted(ports):
        argv += ["--port", str(port)]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )
    if result.returncode not in (0, 1, 2):
        raise RuntimeError(f"tcphealth --format json failed: {result.stderr.strip()[-300:]}")
    states: dict[str, int] = json.loads(result.stdout)["summary"]["states"]
    return {state: count for state, count in sorted(states.items()) if count}


def _duplicates(sockets: list[dict[str, Any]]) -> int:
    """Sockets listed more than once: the same connection 4-tuple, or for listeners the same
    address, port and inode (SO_REUSEPORT listeners share an address but not an inode)."""
    keys: Counter[tuple[Any, ...]] = Counter()
    for sock in sockets:
        local, remote = sock["local"], sock["remote"]
        key: tuple[Any, ...] = (
            sock["family"],
            local["address"],
            local["port"],
            remote["address"],
            remote["port"],
        )
        if sock["state"] == TcpState.LISTEN.value:
            key += (sock.get("inode"),)
        keys[key] += 1
    return sum(count - 1 for count in keys.values() if count > 1)


def _as_dict(counts: Counter[TcpState]) -> dict[str, int]:
    return {state.value: count for state, count in sorted(counts.items())}


def check_counts(tcphealth: str, ports: frozenset[int], with_report: bool) -> CountCheck:
    before = run_ss()
    sockets = _snapshot_rows(tcphealth)
    report = _report_counts(tcphealth, ports) if with_report else None
    after = run_ss()
    ours: Counter[TcpState] = Counter()
    everyone: Counter[TcpState] = Counter()
    for sock in sockets:
        state = TcpState(sock["state"])
        everyone[state] += 1
        local, remote = sock["local"], sock["remote"]
        if is_loopback(local["address"]) and owned_by(ports, local["port"], remote["port"]):
            ours[state] += 1

    def mine(rows: list[Row]) -> dict[str, int]:
        return _as_dict(count_states(rows, ports))

    states = {s.value for s in (*ours, *count_states(before, ports), *count_states(after, ports))}
    states.update(report or {})
    return CountCheck(
        states=sorted(states),
        ss_before=mine(before),
        snapshot=_as_dict(ours),
        report=report,
        ss_after=mine(after),
        host_snapshot=_as_dict(everyone),
        duplicates=_duplicates(sockets),
        sockets_seen=len(sockets),
    )


def print_count_check(check: CountCheck) -> None:
    columns = check.columns()
    print(
        "\nPer-state counts of the load generator's sockets: ss -tan, tcphealth snapshot"
        + (", tcphealth --format json --port ... (summary)" if check.report is not None else "")
        + ", ss -tan again:"
    )
    print(f"  {'state':<12}" + "".join(f"{name:>11}" for name, _ in columns) + "  verdict")
    for state in check.states:
        values = [column.get(state, 0) for _, column in columns]
        if state == TcpState.TIME_WAIT.value:
            low, high = min(values[0], values[-1]), max(values[0], values[-1])
            outside = max(
                (0 if low <= value <= high else min(abs(value - low), abs(value - high)))
                for value in values[1:-1]
            )
            verdict = f"churns (60 s timer); tcphealth {outside} outside the ss range"
        else:
            verdict = "agree" if len(set(values)) == 1 else "DISAGREE"
        print(f"  {state:<12}" + "".join(f"{value:>11}" for value in values) + f"  {verdict}")
    host = " ".join(f"{s}={n}" for s, n in check.host_snapshot.items())
    print(f"  whole host, tcphealth snapshot: {check.sockets_seen} sockets {host}")
    print(
        f"  stable states (LISTEN, ESTABLISHED, CLOSE_WAIT, FIN_WAIT2): "
        f"{'agree with ss' if check.stable_agree else 'DO NOT agree with ss'}; "
        f"sockets listed twice by tcphealth: {check.duplicates}"
    )


# --- tables ----------------------------------------------------------------------------------


def print_tables(results: list[Result], rounds: int) -> None:
    print(f"\nMedians over {rounds} interleaved rounds (stdout to /dev/null):")
    print(f"  {'command':<26} {'wall s':>8} {'min':>8} {'max':>8} {'cpu s':>8} {'peak MiB':>9}")
    for result in results:
        if not result.samples:
            print(f"  {result.tool.name:<26} {result.failure or 'not run'}")
            continue
        walls = [s.wall for s in result.samples]
        print(
            f"  {result.tool.name:<26} {result.wall:>8.3f} {min(walls):>8.3f} "
            f"{max(walls):>8.3f} {_number(result.cpu, 8, 3)} {_number(result.max_rss_mib, 9, 1)}"
        )
    ours = [r for r in results if r.tool.tcphealth and r.samples]
    others = [r for r in results if r.samples and r.tool not in {o.tool for o in ours}]
    if not ours or not others:
        return
    print("\nRatios, tcphealth variant / tool (wall time; peak memory in brackets):")
    width = max(len(o.tool.name) for o in others) + 2
    print(f"  {'':<26}" + "".join(f"{o.tool.name:>{width}}" for o in others))
    for mine in ours:
        cells = "".join(f"{_ratio_cell(mine, o):>{width}}" for o in others)
        print(f"  {mine.tool.name:<26}{cells}")


def _number(value: float | None, width: int, decimals: int) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}.{decimals}f}"


def _ratio_cell(mine: Result, other: Result) -> str:
    cell = f"{mine.wall / other.wall:.2f}"
    if mine.max_rss_mib is not None and other.max_rss_mib:
        cell += f" ({mine.max_rss_mib / other.max_rss_mib:.1f})"
    return cell


@dataclass
class Target:
    text: str
    met: bool | None  # None: the tool it compares with was not measured


def targets(results: list[Result], sockets: int) -> list[Target]:
    """The issue's targets that apply at this size (100k or 300k sockets, within 10 %)."""
    by_name = {r.tool.name: r for r in results if r.samples}
    full = by_name.get("tcphealth plain") or by_name.get("tcphealth (skeleton)")
    lean = by_name.get("tcphealth --no-processes")
    found: list[Target] = []

    def ratio(mine: Result | None, tool: str, limit: float) -> None:
        other = by_name.get(tool)
        if mine is None:
            return
        text = f"{mine.tool.name} <= {limit} x {tool}"
        if other is None:
            found.append(Target(f"{text}: {tool} not measured", None))
            return
        value = mine.wall / other.wall
        found.append(Target(f"{text}: {value:.2f}", value <= limit))

    if abs(sockets - 100_000) <= 10_000:
        ratio(full, "ss -tanp", 0.3)
        ratio(full, "psutil net_connections", 0.7)
        ratio(lean, "ss -tan", 2.5)
    if abs(sockets - 300_000) <= 30_000 and full is not None:
        found.append(Target(f"{full.tool.name} <= 3 s: {full.wall:.2f} s", full.wall <= 3.0))
        peak = full.max_rss_mib
        if peak is None:
            found.append(Target(f"{full.tool.name} <= 150 MiB: not measured", None))
        else:
            found.append(Target(f"{full.tool.name} <= 150 MiB: {peak:.0f} MiB", peak <= 150))
    return found


def growth(results: list[Result], sockets: int, results_dir: Path) -> list[str]:
    """Time growth of each tcphealth variant from a saved run at a tenth of this size."""
    smaller = results_dir / f"{sockets // 10}.json"
    if sockets % 10 or not smaller.is_file():
        return []
    earlier = {r["name"]: r for r in json.loads(smaller.read_text())["results"]}
    lines: list[str] = []
    for result in results:
        before = earlier.get(result.tool.name)
        if not result.tool.tcphealth or not result.samples or not before or not before["wall"]:
            continue
        factor = result.wall / before["wall"]
        verdict = "met" if factor <= 11 else "MISSED"
        lines.append(
            f"{result.tool.name}: {before['wall']:.3f} s at {sockets // 10} -> "
            f"{result.wall:.3f} s at {sockets}: x{factor:.1f} (target <= 11: {verdict})"
        )
    return lines


# --- machine and the generator ---------------------------------------------------------------


def byte_compile() -> None:
    """Byte-compile tcphealth's sources, as ``pip install`` does. With PYTHONDONTWRITEBYTECODE
    set (it is on the machine of RESULTS.md) an editable install never writes them, and every
    run of tcphealth would compile its modules again first."""
    package = REPO / "tcphealth"
    ok = compileall.compile_dir(package, quiet=1)
    print(f"byte-compiled {package.relative_to(REPO)}/" + ("" if ok else " (with errors)"))


def machine() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return out.strip().splitlines()[0] if out.strip() else "?"

    memory = first_line(["sh", "-c", 'free -h | awk \'/^Mem:/ {print $2" total, "$7" free"}\''])
    return {
        "cpus": str(os.cpu_count()),
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpu model": first_line(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"]),
    }


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def wait_for_earlier_time_wait(sockets: int, processes: int, seconds: float = 65.0) -> None:
    """TIME_WAIT left on the generator's ports by an earlier run lasts up to 60 s and would
    make this run bigger than N: wait (bounded) until it has expired."""
    plans = loadgen.plan(sockets, processes, loadgen.host_limits())
    ports = frozenset(
        port
        for worker in plans
        for port in range(worker.first_port, worker.first_port + loadgen.PORTS_PER_WORKER)
    )
    started = time.monotonic()
    told = False
    while True:
        left = count_states(run_ss(), ports)[TcpState.TIME_WAIT]
        waited = time.monotonic() - started
        if not left:
            if told:
                print(f"waited {waited:.0f} s for them", flush=True)
            return
        if waited > seconds:
            print(f"warning: {left} TIME_WAIT sockets of an earlier run are still there")
            return
        if not told:
            print(f"waiting for {left} TIME_WAIT sockets of an earlier run to expire", flush=True)
            told = True
        time.sleep(2)


@contextlib.contextmanager
def load_generator(
    sockets: int, processes: int, seconds: float, state_file: Path
) -> Iterator[dict[str, Any]]:
    """Start ``benchmarks.loadgen``, wait for its READY line, and stop it by pid at the end."""
    argv = [
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        f"--sockets={sockets}",
        f"--processes={processes}",
        f"--seconds={seconds}",
        f"--state-file={state_file}",
        "--exit-with-parent",  # should this runner be killed outright
    ]
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready_within = 60 + sockets / 2000
        deadline = time.monotonic() + ready_within
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while True:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the load generator was not ready in {ready_within:.0f} s")
                if not selector.select(timeout=1.0):
                    continue
                line = process.stdout.readline()
                if not line:
                    raise RuntimeError(f"the load generator exited ({process.wait()})")
                if line.startswith("READY"):
                    print(line.rstrip(), flush=True)
                    break
        yield json.loads(state_file.read_text())
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # by pid; it stops its own workers
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--sockets", type=int, default=100_000, help="N (default 100000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--processes", type=int, default=16, help="load generator workers")
    parser.add_argument(
        "--tcphealth",
        default=str(Path(sys.executable).parent / "tcphealth"),
        help="the tcphealth command to measure (default: next to this Python)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where to save N.json (growth is read from a saved run at N/10)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("ss") is None:
        print("bench: ss (iproute2) is needed as the oracle; apt-get install iproute2")
        return 2
    if not Path(args.tcphealth).exists():
        print(f"bench: no tcphealth at {args.tcphealth}")
        return 2
    facts = machine()
    print("machine: " + "; ".join(f"{k} {v}" for k, v in facts.items()))
    byte_compile()
    ours = tcphealth_tools(args.tcphealth)
    references, missing = reference_tools(sys.executable)
    for note in missing:
        print(f"missing: {note} -- run 'make bench-deps'")
    time_command = gnu_time()
    if time_command is None:
        print("missing: GNU time (/usr/bin/time), so no peak memory -- run 'make bench-deps'")
    tools = ours + references
    print(f"commands: {', '.join(t.name for t in tools)}")
    # Long enough for the slowest tools at this size (a round took 120 s at 300k sockets
    # here); stopped by pid as soon as we are done.
    seconds = 600 + args.rounds * args.sockets / 500
    wait_for_earlier_time_wait(args.sockets, args.processes)
    with tempfile.TemporaryDirectory() as directory:
        state_file = Path(directory) / "loadgen.json"
        with load_generator(args.sockets, args.processes, seconds, state_file) as state:
            ports = frozenset(int(port) for port in state["ports"])
            check = check_counts(
                args.tcphealth, ports, with_report=_tcphealth_has_report(args.tcphealth)
            )
            print_count_check(check)
            load_before = load_average()
            print(f"\nload average before timing: {load_before}", flush=True)
            started = time.monotonic()
            results = run_rounds(tools, args.rounds, time_command)
            elapsed = time.monotonic() - started
            load_after = load_average()
    print(f"load average after timing: {load_after} ({elapsed:.0f} s of timing)")
    print_tables(results, args.rounds)
    found = targets(results, args.sockets)
    grew = growth(results, args.sockets, args.results_dir)
    if found or grew:
        print("\nTargets:")
        for target in found:
            mark = {True: "met", False: "MISSED", None: "n/a"}[target.met]
            print(f"  [{mark}] {target.text}")
        for line in grew:
            print(f"  {line}")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    saved = args.results_dir / f"{args.sockets}.json"
    document = {
        "sockets": args.sockets,
        "rounds": args.rounds,
        "machine": facts,
        "load_before": load_before,
        "load_after": load_after,
        "generator": {"target": state["target"], "achieved": state["achieved"]},
        "count_check": asdict(check),
        "results": [
            {
                "name": r.tool.name,
                "argv": list(r.tool.argv),
                "wall": r.wall if r.samples else None,
                "max_rss_mib": r.max_rss_mib if r.samples else None,
                "failure": r.failure,
                "samples": [asdict(s) for s in r.samples],
            }
            for r in results
        ],
    }
    saved.write_text(json.dumps(document, indent=1) + "\n")
    print(f"\nsaved {saved.relative_to(REPO) if saved.is_relative_to(REPO) else saved}")
    return 0 if check.stable_agree and check.duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
