"""Where the time of one tcphealth run goes, stage by stage, in one process.

    python -m benchmarks.stages --sockets 300000     # start the load generator first
    python -m benchmarks.stages                      # or look at the host as it is

Each stage runs once, in order, as the CLI runs them: the collection (the /proc/*/fd walk in a
forked child while this process decodes the netlink dump, then the rest of the snapshot), the
diagnosis and report, and each renderer writing to /dev/null. For each: wall and CPU time (of
this process: the child's is not in it), microseconds per socket, and the process's peak RSS
after it. Then, for comparison, the fd walk and the dump timed alone. The cyclic garbage
collector is left as the CLI leaves it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import io
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class Stages:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float, float]] = []

    def run(self, name: str, action: Callable[[], T]) -> T:
        wall, cpu = time.perf_counter(), time.process_time()
        result = action()
        self.rows.append(
            (
                name,
                time.perf_counter() - wall,
                time.process_time() - cpu,
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            )
        )
        return result

    def print(self, sockets: int) -> None:
        print(f"\n{'stage':<34} {'wall s':>8} {'cpu s':>8} {'us/socket':>10} {'peak MiB':>9}")
        for name, wall, cpu, peak in self.rows:
            per = cpu / sockets * 1e6 if sockets else 0.0
            print(f"{name:<34} {wall:>8.3f} {cpu:>8.3f} {per:>10.2f} {peak:>9.1f}")
        wall = sum(row[1] for row in self.rows)
        cpu = sum(row[2] for row in self.rows)
        print(f"{'total':<34} {wall:>8.3f} {cpu:>8.3f} {cpu / max(sockets, 1) * 1e6:>10.2f}")


def measure(stages: Stages, reference: Stages) -> int:
    """Run every stage against the live host; returns how many sockets it saw. ``reference``
    gets the two halves of the collection timed apart, one after the other, for comparison
    (the run itself overlaps them: the fd walk runs in a child while the dump is decoded)."""
    stages.run("import tcphealth.cli", lambda: importlib.import_module("tcphealth.cli"))
    from tcphealth import gcpause
    from tcphealth.sources import netlink, procfs

    proc = Path("/proc")
    snapshot = stages.run(
        "collect (fd walk in a child || dump)", lambda: netlink.collect(proc, with_processes=True)
    )
    count = len(snapshot.sockets)

    def dump() -> int:
        with gcpause.paused():
            return len(netlink._dump_both_families(with_tcp_info=True))

    reference.run("fd walk alone (/proc/*/fd)", lambda: procfs.scan_fds(proc))
    reference.run("netlink dump + decode alone", dump)
    try:
        pipeline = importlib.import_module("tcphealth.pipeline")
    except ImportError:
        print("(no tcphealth.pipeline in this tree: diagnosis and rendering not measured)")
        return count
    report = stages.run("diagnose + report", lambda: pipeline.analyse(snapshot))
    for name in ("plain", "json"):
        render = _renderer(name)
        if render is None:
            print(f"(no {name} renderer found)")
            continue
        stages.run(f"render {name} (to /dev/null)", functools.partial(render, report))
    return count


def _renderer(name: str) -> Callable[[Any], None] | None:
    """A function writing ``report`` in format ``name`` to /dev/null through
    ``tcphealth.render.render``, as the CLI does when piped; None where this tree has none."""
    try:
        render_module = importlib.import_module("tcphealth.render")
        render, options, environment = (
            render_module.render,
            render_module.RenderOptions,
            render_module.Environment,
        )
    except (ImportError, AttributeError):
        return None

    def write(report: Any) -> None:
        with open("/dev/null", "w", encoding="utf-8") as sink:
            render(report, name, options(), environment(stdout=sink, stderr=io.StringIO()))

    return write


@contextlib.contextmanager
def maybe_load(sockets: int | None) -> Iterator[None]:
    if sockets is None:
        yield
        return
    from benchmarks.run import load_generator

    with (
        tempfile.TemporaryDirectory() as directory,
        load_generator(sockets, 16, 3600, Path(directory) / "state.json"),
    ):
        yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stages", description=__doc__)
    parser.add_argument("--sockets", type=int, help="start the load generator with N sockets")
    args = parser.parse_args(argv)
    stages, reference = Stages(), Stages()
    with maybe_load(args.sockets):
        count = measure(stages, reference)
    print(f"{count} sockets")
    stages.print(count)
    print("\nfor comparison, the two halves of the collection alone, one after the other:")
    reference.print(count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
