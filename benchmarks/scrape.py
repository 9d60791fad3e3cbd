"""What a Prometheus scrape of ``tcphealth serve`` costs, against a full ``tcphealth`` report
of the same host in the same run (issue 23).

    make bench-scrape N=100000     # = python -m benchmarks.scrape --sockets 100000

1. Starts the load generator (``benchmarks.loadgen``) with N loopback sockets.
2. Starts ``tcphealth serve --min-interval 0`` (so every scrape collects) on a free loopback
   port, and scrapes it once: the first collection (imports, caches) is not steady state.
3. Then, in interleaved rounds: one scrape of ``/metrics``, and one full report
   (``tcphealth --format plain`` to /dev/null). The CPU seconds of a scrape are the serve
   process's utime + stime (and its reaped children's) from /proc/PID/stat before and after
   the request; those of a report come from ``getrusage(RUSAGE_CHILDREN)`` around it.
4. Reports the medians, serve's peak resident memory (VmHWM) and its resident memory after
   each scrape (steady state must not grow), then stops everything by pid.

With ``--baseline CMD`` a second server, started from another tcphealth command (an older
version, say), is scraped in the same rounds, so that a before/after comparison sees the same
load on the machine.

Never part of ``make test``: the numbers go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import selectors
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import run as bench

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SCRAPE_TIMEOUT = 600.0


def cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of ``pid``, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is the state (field 3 of proc(5)); utime is field 14, so index 11 here.
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def memory_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


def start_serve(tcphealth: str, extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        [tcphealth, "serve", "--listen", "127.0.0.1:0", "--min-interval", "0", *extra],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(1.0):
                chunk = os.read(process.stderr.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
                found = re.search(rb"listening on http://127\.0\.0\.1:(\d+)/", seen)
                if found:
                    return process, int(found.group(1))
    process.kill()
    process.wait()
    raise RuntimeError(f"tcphealth serve did not start: {seen.decode(errors='replace')}")


PEAKS: dict[int, list[float]] = {}  # collect_max_resident_bytes of every scrape, in MiB


def scrape(port: int) -> tuple[float, int, str]:
    """Wall seconds, bytes, and the collect_success line of one scrape (and the peak memory of
    the collecting child into PEAKS)."""
    started = time.perf_counter()
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT
    ) as response:
        body = response.read()
    wall = time.perf_counter() - started
    for line in body.decode().splitlines():
        if line.startswith("tcphealth_collect_max_resident_bytes "):
            PEAKS.setdefault(port, []).append(float(line.split()[1]) / (1 << 20))
    lines = body.decode().splitlines()
    success = next(
        (line for line in lines if line.startswith("tcphealth_collect_success")),
        "tcphealth_collect_success ?",
    )
    # Which way it collected (a version that says so): the full path costs more, and a
    # namespace another process made meanwhile sends the default scope there.
    path = next((line for line in lines if line.startswith("tcphealth_collect_path_info")), None)
    if path is not None:
        success += ", " + path.split("{", 1)[1].split("}", 1)[0]
    return wall, len(body), success


def full_report(tcphealth: str) -> tuple[float, float]:
    """Wall and CPU seconds of one ``tcphealth --format plain`` run (stdout to /dev/null)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        [tcphealth, "--format", "plain"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=SCRAPE_TIMEOUT,
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scrape", description=__doc__)
    parser.add_argument("--sockets", type=int, default=100_000, help="N (default 100000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--processes", type=int, default=16, help="load generator workers")
    parser.add_argument(
        "--baseline",
        metavar="CMD",
        action="append",
        default=[],
        help="also scrape a server started from this tcphealth command, in the same rounds "
        "(repeatable)",
    )
    parser.add_argument(
        "--serve-arg",
        metavar="ARG",
        action="append",
        default=[],
        help="one more argument to every server's command line (repeatable): --netns self "
        "where a network namespace someone else made sends the default to the full path",
    )
    parser.add_argument(
        "--tcphealth",
        default=str(Path(sys.executable).parent / "tcphealth"),
        help="the tcphealth command to measure (default: next to this Python)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    facts = bench.machine()
    print("machine: " + "; ".join(f"{k} {v}" for k, v in facts.items()))
    bench.byte_compile()
    bench.wait_for_earlier_time_wait(args.sockets, args.processes)
    with tempfile.TemporaryDirectory() as scratch:
        state_file = Path(scratch) / "loadgen.json"
        seconds = 600 + args.sockets / 200
        with bench.load_generator(args.sockets, args.processes, seconds, state_file):
            servers: list[Server] = []
            try:
                commands = [("scrape", args.tcphealth)]
                for number, baseline in enumerate(args.baseline, 1):
                    name = "baseline scrape" if len(args.baseline) == 1 else f"baseline {number}"
                    print(f"{name}: {baseline}")
                    commands.append((name, baseline))
                for name, command in commands:
                    serve, port = start_serve(command, args.serve_arg)
                    servers.append(Server(name, serve, port))
                return measure(args, servers)
            finally:
                for server in servers:
                    stop_serve(server.process)


@dataclass
class Server:
    """A ``tcphealth serve`` under measurement, and what its scrapes cost."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    resident: list[int] = field(default_factory=list)  # KiB after each scrape

    def scrape(self) -> str:
        pid = self.process.pid
        before = cpu_seconds(pid)
        wall, _, success = scrape(self.port)
        cpu = cpu_seconds(pid) - before
        self.walls.append(wall)
        self.cpus.append(cpu)
        self.resident.append(memory_kib(pid, "VmRSS"))
        return f"{self.name} wall {wall:.2f} s cpu {cpu:.2f} s ({success})"


def stop_serve(serve: subprocess.Popen[bytes]) -> None:
    serve.send_signal(signal.SIGTERM)
    try:
        print(f"serve: exit {serve.wait(timeout=60)} on SIGTERM")
    except subprocess.TimeoutExpired:
        serve.kill()
        serve.wait()
        print("serve: did not stop on SIGTERM within 60 s; killed")
    if serve.stderr is not None:
        serve.stderr.close()


def measure(args: argparse.Namespace, servers: list[Server]) -> int:
    for server in servers:
        pid = server.process.pid
        before = cpu_seconds(pid)
        wall, size, success = scrape(server.port)
        first_cpu = cpu_seconds(pid) - before
        print(
            f"first {server.name} (not steady state): wall {wall:.2f} s, cpu {first_cpu:.2f} s, "
            f"{size:,} bytes, {success}; serve VmRSS {memory_kib(pid, 'VmRSS') / 1024:.0f} MiB"
        )
    print(f"load average before timing: {bench.load_average()}")
    reports_wall: list[float] = []
    reports_cpu: list[float] = []
    steps: list[Server | None] = [*servers, None]  # None: a full report
    for number in range(1, args.rounds + 1):
        shift = (number - 1) % len(steps)  # the order turns each round
        line = []
        for step in steps[shift:] + steps[:shift]:
            if step is not None:
                line.append(step.scrape())
            else:
                wall, cpu = full_report(args.tcphealth)
                reports_wall.append(wall)
                reports_cpu.append(cpu)
                line.append(f"report wall {wall:.2f} s cpu {cpu:.2f} s")
        print(f"round {number}/{args.rounds}: " + "; ".join(line), flush=True)
    print(f"load average after timing: {bench.load_average()}")
    print()
    print(f"N = {args.sockets:,}: medians over {args.rounds} rounds")
    print("  what                             wall s    cpu s   cpu min   cpu max")
    rows = [(f"{server.name} (steady state)", server.walls, server.cpus) for server in servers]
    for name, walls, cpus in (*rows, ("full report (tcphealth)", reports_wall, reports_cpu)):
        print(
            f"  {name:<31} {statistics.median(walls):7.2f}  {statistics.median(cpus):7.2f}"
            f"   {min(cpus):7.2f}   {max(cpus):7.2f}"
        )
    for server in servers:
        ratio = statistics.median(server.cpus) / statistics.median(reports_cpu)
        pid = server.process.pid
        print(f"  {server.name}: scrape / report (cpu): {ratio:.2f}")
        print(f"    serve peak RSS (VmHWM): {memory_kib(pid, 'VmHWM') / 1024:.0f} MiB")
        peaks = PEAKS.get(server.port, [])
        if peaks:
            print(
                "    collecting child's peak RSS (collect_max_resident_bytes), MiB: "
                + " ".join(f"{value:.0f}" for value in peaks)
            )
        print(
            "    serve RSS after each scrape (MiB): "
            + " ".join(f"{kib / 1024:.0f}" for kib in server.resident)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
