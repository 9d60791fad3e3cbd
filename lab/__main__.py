"""``make lab`` / ``make lab-down``: the namespace lab for exploring by hand.

``python -m lab up [--seconds 600]`` builds the lab, prints every socket it holds and the
namespaces to look into (``tcphealth --netns NAME``, ``ip netns exec NAME ss -tanoe``), then holds
it until the time is up, Ctrl-C, or ``python -m lab down`` (which stops the holder by the pid in
its pidfile and deletes any namespace of ours left behind).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from lab.netns_lab import PREFIX, leftover_namespaces, missing_tools, run, running_lab

PIDFILE = Path("/run") / f"{PREFIX}.pid"


def up(seconds: float) -> int:
    missing = missing_tools()
    if missing:
        print(f"the lab needs {', '.join(missing)} (apt-get install iproute2 nftables)")
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `down` ends us through finally
    with running_lab() as lab:
        PIDFILE.write_text(f"{os.getpid()}\n")
        try:
            for made in lab.created:
                owner = "-" if made.owner is None else str(made.owner)
                print(
                    f"{made.namespace:<14} {made.family:<5} {made.state.value:<12} "
                    f"{made.local:<28} {made.remote:<28} {owner:<7} {made.role}"
                )
            print(f"\nnamespaces: {' '.join(lab.namespaces)}")
            print(f"try: tcphealth --netns {lab.b}   (held for {seconds:.0f} s; make lab-down)")
            sys.stdout.flush()
            time.sleep(seconds)
        finally:
            PIDFILE.unlink(missing_ok=True)
    return 0


def down() -> int:
    if PIDFILE.exists():
        pid = int(PIDFILE.read_text())
        with contextlib.suppress(ProcessLookupError):  # it may have ended by itself
            os.kill(pid, signal.SIGTERM)  # the holder we started, by its pid
        deadline = time.monotonic() + 10
        while PIDFILE.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    for namespace in leftover_namespaces():
        run("ip", "netns", "del", namespace)
        print(f"deleted {namespace}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m lab")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--seconds", type=float, default=600.0)
    arguments = parser.parse_args()
    return up(arguments.seconds) if arguments.action == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
