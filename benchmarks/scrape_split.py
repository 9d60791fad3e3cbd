"""Where a steady-state lean scrape's CPU goes, per process and user/system (issue 23).

    python -m benchmarks.scrape_split [--scrapes 4] [--profile FILE]

Does in one process what ``tcphealth serve`` does for a scrape -- the same setup (numpy and
the lean path loaded once, the dump received in place, the descriptor tables carried from one
collection to the next), a forked child per collection -- and splits each steady-state scrape
(every one after the first) into:

- the server: receiving the families and writing the exposition (``generate_latest``);
- the collecting child: its own user and system time, and its stages' CPU (the dump's
  columns, the owners' answer, the table, the snapshot, the diagnosis and families);
- the descriptor walk's child (reaped by the collecting child): its user and system time.

With ``--profile FILE`` the last collection also runs under cProfile in its child and its
stats are written to FILE (``python -m pstats FILE``).

Run it beside the load generator; under the suite lock at 100,000 sockets and more. Never
part of ``make test``: the numbers go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pickle
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric


def _usage(who: int) -> tuple[float, float, int]:
    usage = resource.getrusage(who)
    return usage.ru_utime, usage.ru_stime, usage.ru_minflt


def _cpu() -> float:
    return time.process_time()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scrape_split", description=__doc__)
    parser.add_argument("--scrapes", type=int, default=4, help="steady-state scrapes (default 4)")
    parser.add_argument("--profile", type=Path, help="cProfile the last collection into this file")
    args = parser.parse_args(argv)

    from tcphealth import exporter
    from tcphealth.render.prometheus import collect_path_family
    from tcphealth.sources import background_scan, dump_relay, fd_cache, lean

    dump_relay.received_in_place()
    if hasattr(background_scan, "walked_in_place"):  # as serve does (a baseline may not)
        background_scan.walked_in_place()
    if not fd_cache.enable():
        print("fd_cache not supported here: every scrape walks every descriptor")
    stages_file = Path(tempfile.mkstemp(prefix="tcphealth-split-")[1])

    def collect(profile: Path | None) -> list[Metric]:
        stages: dict[str, Any] = {}
        profiler = cProfile.Profile() if profile is not None else None
        if profiler is not None:
            profiler.enable()
        mark = _cpu()
        children_before = _usage(resource.RUSAGE_CHILDREN)
        self_before = _usage(resource.RUSAGE_SELF)
        # "self": this network namespace, as the default does where it is the only one (the
        # suites of other sessions on this machine make namespaces now and then).
        collected = lean.collect(scope="self")
        if isinstance(collected, str):
            raise SystemExit(f"not the lean path: {collected}")
        stages["collect (dump, owners, table, snapshot)"] = _cpu() - mark
        mark = _cpu()
        snapshot, table = collected
        families = [
            *exporter.table_families_of(snapshot, table, lazy=lean.BULK_CODES),
            collect_path_family("lean"),
        ]
        stages["diagnosis and families"] = _cpu() - mark
        self_after = _usage(resource.RUSAGE_SELF)
        children_after = _usage(resource.RUSAGE_CHILDREN)
        if profiler is not None and profile is not None:
            profiler.disable()
            profiler.dump_stats(str(profile))
        stages["child user"] = self_after[0] - self_before[0]
        stages["child sys"] = self_after[1] - self_before[1]
        stages["walk user"] = children_after[0] - children_before[0]
        stages["walk sys"] = children_after[1] - children_before[1]
        stages["child minor faults"] = self_after[2] - self_before[2]
        stages["walk minor faults"] = children_after[2] - children_before[2]
        stages["sockets"] = len(table.columns)
        stages_file.write_text(json.dumps(stages))
        return families

    def scrape(profile: Path | None) -> dict[str, Any]:
        server_before = _usage(resource.RUSAGE_SELF)
        children_before = _usage(resource.RUSAGE_CHILDREN)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            status = 0
            try:
                families = collect(profile)
                payload = pickle.dumps((families, fd_cache.handed_back()), pickle.HIGHEST_PROTOCOL)
                with os.fdopen(write_end, "wb") as sending:
                    sending.write(payload)
            except BaseException as error:  # said, and the child leaves
                print("collection failed:", error)
                status = 1
            finally:
                os._exit(status)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as receiving:
            data = receiving.read()
        os.waitpid(pid, 0)
        families, delta = pickle.loads(data)
        fd_cache.adopt(delta)
        registry = CollectorRegistry(auto_describe=False)

        class Fixed:
            def collect(self) -> list[Metric]:
                return families

        registry.register(Fixed())
        body = generate_latest(registry)
        server_after = _usage(resource.RUSAGE_SELF)
        children_after = _usage(resource.RUSAGE_CHILDREN)
        stages: dict[str, Any] = json.loads(stages_file.read_text())
        stages["server user"] = server_after[0] - server_before[0]
        stages["server sys"] = server_after[1] - server_before[1]
        reaped = (children_after[0] - children_before[0]) + (children_after[1] - children_before[1])
        stages["whole scrape"] = stages["server user"] + stages["server sys"] + reaped
        stages["exposition bytes"] = len(body)
        return stages

    try:
        scrape(None)  # the first: not steady state
        rounds = [
            scrape(args.profile if at == args.scrapes - 1 else None) for at in range(args.scrapes)
        ]
    finally:
        stages_file.unlink(missing_ok=True)
    measured = rounds[:-1] if args.profile is not None and len(rounds) > 1 else rounds
    print(
        f"sockets {measured[0]['sockets']}; {len(measured)} steady-state scrapes (medians, CPU s); "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    for key in measured[0]:
        if key in ("sockets", "exposition bytes"):
            continue
        values = [row[key] for row in measured]
        shown = ", ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in values)
        print(f"  {key:42} {statistics.median(values):9.3f}  ({shown})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
