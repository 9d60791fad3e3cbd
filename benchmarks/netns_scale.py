"""Every network namespace at scale: N namespaces x M loopback sockets, tcphealth against `ss`.

    python -m benchmarks.netns_scale [--namespaces 50] [--sockets 2000] [--rounds 3]
                                     [--baseline DIR] [--host-sockets 20000]

As root. Makes ``--namespaces`` network namespaces (``ip netns add thbench-...``), each with
loopback up and one process holding about ``--sockets`` sockets over 127.0.0.1 (a listener,
and half the rest ESTABLISHED pairs... see WORKER), then measures in interleaved rounds:

- ``tcphealth`` (every namespace: the default as root in the host's namespace), plain, piped;
- a shell loop of ``nsenter --net=/proc/PID/ns/net ss -tanp`` over the same namespaces;
- a shell loop of ``ip netns exec NAME ss -tanp`` over them;
- ``tcphealth --netns self`` (the host's namespace alone).

Before the namespaces exist, with ``--baseline DIR`` (a tree of tcphealth as it was, e.g.
``git archive main | tar -x -C DIR``), it also measures the host-only run of both trees on a
host holding ``--host-sockets`` loopback sockets (benchmarks.loadgen), to show the run that
covers the host's one namespace is no slower than before.

It checks first that tcphealth counts, per namespace, what ``nsenter ... ss -tan`` counts.
Safety: loopback only; one process per namespace, each started and stopped by its pid; every
namespace made is deleted at the end, also on failure or Ctrl-C; each process also exits by
itself after ``--seconds``. Never a test: numbers go to benchmarks/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.run import Result, Tool, gnu_time, print_tables, run_rounds
from tcphealth.model import parse_state

REPO = Path(__file__).resolve().parent.parent
PREFIX = "thbench"

# Holds PAIRS connections (both ends) and a listener on 127.0.0.1 in the namespace it runs in;
# says "ready", then waits for stdin to close or the deadline.
WORKER = r"""
import resource, select, socket, subprocess, sys, time
pairs, seconds = int(sys.argv[1]), float(sys.argv[2])
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 2 * pairs + 64), hard))
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(512)
port = listener.getsockname()[1]
held = []
for start in range(0, pairs, 256):
    batch = [socket.create_connection(("127.0.0.1", port)) for _ in range(min(256, pairs - start))]
    held += batch + [listener.accept()[0] for _ in batch]
print("ready", port, len(held) + 1, flush=True)
select.select([sys.stdin], [], [], seconds)
"""


@dataclass
class Namespace:
    name: str
    process: subprocess.Popen[str]
    sockets: int

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.contextmanager
def namespaces(count: int, sockets: int, seconds: float) -> Iterator[list[Namespace]]:
    made: list[str] = []
    started: list[Namespace] = []
    tag = secrets.token_hex(2)
    try:
        for number in range(count):
            name = f"{PREFIX}-{tag}-{number}"
            subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
            made.append(name)
            process = subprocess.Popen(
                ["ip", "netns", "exec", name, sys.executable, "-c", WORKER,
                 str(sockets // 2), str(seconds)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            assert process.stdout is not None
            words = process.stdout.readline().split()
            if words[:1] != ["ready"]:
                process.kill()
                process.wait()
                raise RuntimeError(f"{name}: the worker did not start ({words})")
            started.append(Namespace(name, process, int(words[2])))
        yield started
    finally:
        for namespace in started:
            with contextlib.suppress(OSError):
                assert namespace.process.stdin is not None
                namespace.process.stdin.close()
        for namespace in started:
            try:
                namespace.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(namespace.pid, signal.SIGKILL)
                namespace.process.wait(timeout=30)
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def tcphealth_argv(tree: Path, *args: str) -> tuple[str, ...]:
    """tcphealth from ``tree`` (this repository, or a baseline copy) under this Python."""
    return ("env", f"PYTHONPATH={tree}", sys.executable, "-m", "tcphealth", *args)


def check_counts(spaces: list[Namespace]) -> None:
    """tcphealth's sockets per state in each namespace against ``nsenter ... ss -tan``."""
    done = subprocess.run(
        [*tcphealth_argv(REPO, "sockets", "--format", "json", "--no-processes")],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    document = json.loads(done.stdout)
    label_of = {ns["inode"]: ns["label"] for ns in document["namespaces"]}
    mine: dict[str, Counter[str]] = {}
    for sock in document["sockets"]:
        mine.setdefault(label_of.get(sock["netns_inode"], "?"), Counter())[sock["state"]] += 1
    bad = 0
    for space in spaces:
        out = subprocess.run(
            ["nsenter", f"--net=/proc/{space.pid}/ns/net", "ss", "-tanH"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        theirs: Counter[str] = Counter()
        for line in out.splitlines():
            state = parse_state(line.split()[0])
            theirs[state.value if state else "?"] += 1
        if mine.get(space.name) != theirs:
            bad += 1
            print(f"  {space.name}: tcphealth {dict(mine.get(space.name, {}))} ss {dict(theirs)}")
    total = sum(space.sockets for space in spaces)
    print(
        f"count check: {len(spaces) - bad}/{len(spaces)} namespaces equal to nsenter ss -tan "
        f"({total:,} sockets made; tcphealth read {len(document['namespaces'])} namespaces)"
    )


@contextlib.contextmanager
def host_load(sockets: int) -> Iterator[None]:
    """benchmarks.loadgen holding ``sockets`` in the host's namespace, stopped by its pid."""
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.loadgen", "--sockets", str(sockets),
         "--seconds", "900", "--exit-with-parent"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("READY"):
                print(line.strip())
                break
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1800)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--host-sockets", type=int, default=20000)
    parser.add_argument("--output", type=Path, default=None, help="raw samples as JSON")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root: it makes network namespaces", file=sys.stderr)
        return 2
    timer = gnu_time()
    record: dict[str, object] = {"namespaces": args.namespaces, "sockets": args.sockets}
    if args.baseline is not None:
        print(f"host only, {args.host_sockets:,} loopback sockets, no other namespace:")
        with host_load(args.host_sockets):
            tools = [
                Tool("tcphealth (this)", tcphealth_argv(REPO), tcphealth=True),
                Tool("tcphealth (baseline)", tcphealth_argv(args.baseline), tcphealth=True),
            ]
            host_results = run_rounds(tools, args.rounds + 2, timer)
        print_tables(host_results, args.rounds + 2)
        record["host_only"] = _raw(host_results)
    print(f"\n{args.namespaces} namespaces x {args.sockets:,} sockets:")
    with namespaces(args.namespaces, args.sockets, args.seconds) as spaces:
        check_counts(spaces)
        pids = " ".join(str(space.pid) for space in spaces)
        names = " ".join(shlex.quote(space.name) for space in spaces)
        tools = [
            Tool("tcphealth (all)", tcphealth_argv(REPO, "--format", "plain"), tcphealth=True),
            Tool(
                "tcphealth --no-processes",
                tcphealth_argv(REPO, "--format", "plain", "--no-processes"),
                tcphealth=True,
            ),
            Tool(
                "tcphealth --netns self",
                tcphealth_argv(REPO, "--format", "plain", "--netns", "self"),
                tcphealth=True,
            ),
            Tool(
                "nsenter ss -tanp loop",
                ("sh", "-c", f"for p in {pids}; do nsenter --net=/proc/$p/ns/net ss -tanp; done"),
            ),
            Tool(
                "ip netns exec ss loop",
                ("sh", "-c", f"for n in {names}; do ip netns exec $n ss -tanp; done"),
            ),
        ]
        results = run_rounds(tools, args.rounds, timer)
    print_tables(results, args.rounds)
    record["all_namespaces"] = _raw(results)
    if args.output is not None:
        args.output.write_text(json.dumps(record, indent=1) + "\n")
    return 0


def _raw(results: list[Result]) -> list[dict[str, object]]:
    return [
        {
            "tool": result.tool.name,
            "argv": list(result.tool.argv),
            "wall": [sample.wall for sample in result.samples],
            "max_rss_kib": [sample.max_rss_kib for sample in result.samples],
            "failure": result.failure,
        }
        for result in results
    ]


if __name__ == "__main__":
    sys.exit(main())
