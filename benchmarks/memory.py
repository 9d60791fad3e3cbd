"""Peak memory of tcphealth on the largest inputs it accepts (issue 26).

Two inputs, generated here, each read by a fresh ``tcphealth`` process whose peak RSS is
taken from ``getrusage(RUSAGE_CHILDREN)`` after it exits:

- a /proc/net/tcp copy of ``--rows`` rows (1,000,000 by default: about 150 MB, within the
  256 MiB limit), sockets of every state spread over many local ports;
- a snapshot of ``--sockets`` sockets (300,000 by default) held by 1,000 processes, replayed
  with ``--from``.

Each is run as ``check`` (the diagnosis, one status line) and as ``sockets --format json``
(every socket written), output to /dev/null. With ``--live N``, first the yardstick of the
bound: ``check`` on this host while the load generator holds N loopback sockets; with
``--at-limit``, also a /proc table as large as the 256 MiB text limit allows and an ``ss -tan``
paste of as many sockets as a paste may hold (``check``).
``make bench-memory``; results in RESULTS.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tcphealth import bounds
from tcphealth.model import (
    Attribution,
    Endpoint,
    Family,
    HostInfo,
    OwnerSource,
    Process,
    Snapshot,
    Socket,
    TcpState,
    TimerKind,
)
from tcphealth.sources.snapshot_file import write_snapshot

HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n"
)
STATES = ["01", "01", "01", "06", "06", "08", "0A", "02", "04", "05"]


def write_table(path: Path, rows: int) -> None:
    with path.open("w", encoding="ascii") as handle:
        handle.write(HEADER)
        for number in range(rows):
            state = STATES[number % len(STATES)]
            local_port = 1024 + number % 60000
            remote = f"{0x0A000000 + number % 5000:08X}:{443 + number % 7:04X}"
            handle.write(
                f"{number:6d}: 0100007F:{local_port:04X} {remote} {state} "
                f"00000000:00000000 00:00000000 00000000  1000        0 {100000 + number} 1 "
                "0000000000000000 20 4 30 10 -1\n"
            )


def write_snapshot_file(path: Path, sockets: int) -> None:
    states = [TcpState.ESTABLISHED] * 5 + [TcpState.TIME_WAIT, TcpState.CLOSE_WAIT]
    made = tuple(
        Socket(
            family=Family.IPV4,
            local=Endpoint(ipaddress.IPv4Address("10.0.0.5"), 1024 + number % 60000),
            remote=Endpoint(ipaddress.IPv4Address(0x0A140000 + number % 5000), 5432),
            state=states[number % len(states)],
            send_queue=0,
            recv_queue=0,
            timer=TimerKind.NONE,
            retransmits=0,
            uid=1000,
            inode=100000 + number,
            pids=(1000 + number % 1000,),
            owner_source=OwnerSource.FD,
        )
        for number in range(sockets)
    )
    processes = tuple(
        Process(pid=1000 + n, name=f"worker{n}", uid=1000, cmdline=("worker", str(n)))
        for n in range(1000)
    )
    snapshot = Snapshot(
        host=HostInfo(
            hostname="bench", kernel=None, taken_at=time.time(), source="bench", privileged=True
        ),
        attribution=Attribution(attempted=True, processes_scanned=1000),
        processes=processes,
        sockets=made,
    )
    write_snapshot(snapshot, path)


def write_ss_paste(path: Path, rows: int) -> None:
    """``rows`` ESTABLISHED rows of ``ss -tan`` under its header: each a socket of its own."""
    with path.open("w", encoding="ascii") as out:
        out.write("State  Recv-Q Send-Q   Local Address:Port    Peer Address:Port\n")
        for n in range(rows):
            local = f"10.{n // 15_000_000 % 250}.{n // 60_000 % 250}.{n // 250 % 240 + 1}"
            out.write(f"ESTAB  0      0     {local}:{1024 + n % 60_000}   10.9.9.9:5432\n")


def write_transcript(path: Path, rows: int, other: int) -> None:
    """A terminal transcript: ``ss -tan`` with ``rows`` connections, then ``other`` lines of
    ``ps`` output, which a paste reader passes over. Text far larger than its sockets."""
    with path.open("w", encoding="ascii") as out:
        out.write("root@web1:~# ss -tan\n")
        out.write("State  Recv-Q Send-Q   Local Address:Port    Peer Address:Port\n")
        for n in range(rows):
            peer = f"10.9.{n // 250 % 250}.{n % 250 + 1}"
            out.write(f"ESTAB  0      0     10.0.0.5:{1024 + n % 60_000}   {peer}:5432\n")
        out.write("root@web1:~# ps -eo pid,tty,stat,time,args\n")
        for n in range(other):
            out.write(
                f"{n + 2:7d} ?        Ss     0:{n % 60:02d} /usr/sbin/worker --queue=jobs-{n % 97} "
                f"--threads 8 --log /var/log/worker/{n}.log\n"
            )


def peak_of(args: list[str], piped: Path | None = None) -> tuple[float, int, int]:
    """(seconds, peak RSS in bytes, exit code) of one run of the CLI in a fresh process;
    ``piped``: with that file written into its standard input by ``cat`` (``--from -``)."""
    # getrusage(RUSAGE_CHILDREN) is the largest child's peak so far: each run gets its own
    # helper process, so the figure is that run's alone (cat's is far smaller).
    probe = (
        "import resource, subprocess, sys, time\n"
        "piped, *command = sys.argv[1:]\n"
        "start = time.perf_counter()\n"
        "if piped:\n"
        "    cat = subprocess.Popen(['cat', piped], stdout=subprocess.PIPE)\n"
        "    done = subprocess.run(command + ['--from', '-'], stdin=cat.stdout,\n"
        "                          stdout=subprocess.DEVNULL, check=False)\n"
        "    cat.wait()\n"
        "else:\n"
        "    done = subprocess.run(command, stdout=subprocess.DEVNULL, check=False)\n"
        "took = time.perf_counter() - start\n"
        "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "print(took, peak, done.returncode)\n"
    )
    source = str(piped) if piped is not None else ""
    command = [sys.executable, "-c", probe, source, sys.executable, "-m", "tcphealth", *args]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
    return float(output[0]), int(output[1]), int(output[2])


def live_peak(sockets: int, processes: int) -> dict[str, object]:
    """The live collector's cost, the yardstick of the bound: ``check`` on this host while the
    load generator holds ``sockets`` loopback sockets (the host's own few come on top)."""
    from benchmarks import run as bench

    bench.byte_compile()
    bench.wait_for_earlier_time_wait(sockets, processes)
    with tempfile.TemporaryDirectory(prefix="tcphealth-memory-live-") as scratch:
        state_file = Path(scratch) / "loadgen.json"
        with bench.load_generator(sockets, processes, 600 + sockets / 200, state_file):
            peak_of(["check"])  # warm: the first run after the sockets appear is not steady
            seconds, peak, code = peak_of(["check"])
    return {
        "input": f"live (netlink), {sockets:,} loopback sockets",
        "bytes": 0,
        "command": "check",
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak / (1 << 20), 1),
        "bytes_per_socket": round(peak / sockets),
        "exit": code,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--sockets", type=int, default=300_000)
    parser.add_argument("--live", type=int, default=0, help="loopback sockets for the live run")
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument(
        "--at-limit", action="store_true", help="also a /proc table of 256 MiB, the text limit"
    )
    parser.add_argument("--output", type=Path, default=None)
    options = parser.parse_args(argv)
    results: list[dict[str, object]] = []
    if options.live:
        row = live_peak(options.live, options.processes)
        results.append(row)
        print(json.dumps(row), flush=True)
    with tempfile.TemporaryDirectory(prefix="tcphealth-memory-") as directory:
        table = Path(directory) / "tcp"
        write_table(table, options.rows)
        snapshot = Path(directory) / "snapshot.json"
        write_snapshot_file(snapshot, options.sockets)
        inputs = [
            (f"/proc/net/tcp, {options.rows:,} rows", table, options.rows),
            (f"snapshot, {options.sockets:,} sockets", snapshot, options.sockets),
        ]
        if options.at_limit:
            # The most rows that fit the 256 MiB limit for pasted text: past a million rows
            # a row is up to 135 bytes (slot number and inode of 7 digits).
            rows = ((256 << 20) - len(HEADER)) // 135
            largest = Path(directory) / "tcp-at-limit"
            write_table(largest, rows)
            inputs.append((f"/proc/net/tcp at the 256 MiB limit, {rows:,} rows", largest, rows))
            # A paste of short ss rows at the cap on pasted sockets (bounds.PASTE_SOCKET_LIMIT):
            # the densest paste tcphealth reads, since 256 MiB of such rows is refused there.
            cap = bounds.PASTE_SOCKET_LIMIT
            paste = Path(directory) / "ss-at-cap.txt"
            write_ss_paste(paste, cap)
            inputs.append((f"ss -tan paste at the socket limit, {cap:,} rows", paste, cap))
        for label, path, count in inputs:
            size = path.stat().st_size
            commands = [["check", "--from", str(path)], ["sockets", "--format", "json"]]
            runs: list[tuple[list[str], Path | None]] = [
                (args, None) for args in (commands[:1] if "limit" in label else commands)
            ]
            if "limit" not in label:  # the same input through a pipe: read as it comes too
                runs.append((["check"], path))
            for args, piped in runs:
                if args[0] == "sockets":
                    args = [*args, "--from", str(path)]
                seconds, peak, code = peak_of(args, piped)
                row = {
                    "input": label + (" (cat | --from -)" if piped is not None else ""),
                    "bytes": size,
                    "command": " ".join(args[:3] if args[0] == "sockets" else args[:1]),
                    "seconds": round(seconds, 2),
                    "peak_rss_mib": round(peak / (1 << 20), 1),
                    "bytes_per_socket": round(peak / count),
                    "exit": code,
                }
                results.append(row)
                print(json.dumps(row), flush=True)
    if options.output is not None:
        options.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
