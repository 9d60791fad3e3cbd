"""A loopback load generator: several worker processes that hold a known mix of TCP states.

    python -m benchmarks.loadgen --sockets 100000 [--processes 16] [--seconds 600]

Per worker, all on 127.0.0.0/8 and nowhere else:

- two LISTEN sockets on 127.0.0.1, on fixed ports below the ephemeral range;
- ESTABLISHED pairs: a client connected from 127.0.0.{2..17} and the accepted socket;
- CLOSE_WAIT + owned FIN_WAIT2 pairs: the client calls ``shutdown(SHUT_WR)`` and neither side
  ever closes, so the client waits in FIN_WAIT2 and the accepted socket in CLOSE_WAIT forever;
- TIME_WAIT: connect, accept, the client closes first, then the server. TIME_WAIT lasts 60 s,
  so each worker remakes a batch when it expires: the count churns around its target.

Clients bind their source address with ``IP_BIND_ADDRESS_NO_PORT`` so the kernel picks the
port at connect() time per (source, destination, port) and 16 source addresses times the
listeners never run out of ephemeral ports. Each worker raises RLIMIT_NOFILE to its hard limit;
more workers are started where ``--processes`` of them could not hold N descriptors.

Safety: every loop is bounded in count and by the deadline; the run ends by itself after
``--seconds`` (or, with ``--exit-with-parent``, when whatever started it exits); SIGTERM or
Ctrl-C to the pid in ``--pidfile`` stops it. Workers close every
socket with an RST (SO_LINGER 0), so a stopped run leaves no TIME_WAIT or orphan behind, and
they exit on their own if the controller disappears.

When everything is set up the controller counts its sockets with ``ss -tan`` and prints one
line, ``READY pid=… sockets=… LISTEN=… ESTABLISHED=… CLOSE_WAIT=… FIN_WAIT2=… TIME_WAIT=…``,
and writes the same facts as JSON to ``--state-file``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import socket
import struct
import sys
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.sstable import LOADGEN_STATES, STABLE_STATES, count_states, run_ss
from tcphealth.model import TcpState

IP_BIND_ADDRESS_NO_PORT = 24  # linux/in.h; not exported by the socket module
LISTEN_ADDRESS = "127.0.0.1"
SOURCE_ADDRESSES = tuple(f"127.0.0.{host}" for host in range(2, 18))
LISTENERS_PER_WORKER = 2
PORTS_PER_WORKER = 16  # a worker binds its listeners within its own block of ports
DEFAULT_BASE_PORT = 20000
FD_RESERVE = 64  # stdio, pipes, and whatever Python opens
BATCH = 512  # connections per connect-then-accept round; at most the accept queue's length
CONNECT_TIMEOUT = 5.0
TIME_WAIT_SECONDS = 60.0  # TCP_TIMEWAIT_LEN, fixed in the kernel
ESTABLISHED_SHARE = 0.6  # of the descriptor-held sockets that are not listeners
DEFAULT_TIME_WAIT_SHARE = 0.1
SETTLE_SECONDS = 10.0  # how long the controller waits for ss to show every state reached
STOP_SECONDS = 30.0  # how long a stopped worker may take to close its sockets
# The controller stops the workers at the deadline; they end by themselves this much later, in
# case it could not (so an early worker exit always means a failure).
WORKER_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class Mix:
    """The sockets one worker (or the whole run) holds, by kind."""

    listeners: int = 0
    established_pairs: int = 0
    half_closed_pairs: int = 0
    time_wait: int = 0

    @property
    def held(self) -> int:
        """Sockets that occupy a file descriptor (all but TIME_WAIT)."""
        return self.listeners + 2 * self.established_pairs + 2 * self.half_closed_pairs

    @property
    def sockets(self) -> int:
        return self.held + self.time_wait

    def counts(self) -> dict[TcpState, int]:
        return {
            TcpState.LISTEN: self.listeners,
            TcpState.ESTABLISHED: 2 * self.established_pairs,
            TcpState.CLOSE_WAIT: self.half_closed_pairs,
            TcpState.FIN_WAIT2: self.half_closed_pairs,
            TcpState.TIME_WAIT: self.time_wait,
        }


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    mix: Mix
    first_port: int


@dataclass(frozen=True)
class Limits:
    """What the host allows; read from /proc and getrlimit, or given in tests."""

    fd_hard_limit: int
    max_tw_buckets: int
    somaxconn: int
    ephemeral_low: int


def _read_proc_int(path: str, default: int) -> int:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def host_limits() -> Limits:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = _read_proc_int("/proc/sys/fs/nr_open", 1 << 20)
    return Limits(
        fd_hard_limit=hard,
        max_tw_buckets=_read_proc_int("/proc/sys/net/ipv4/tcp_max_tw_buckets", 1 << 17),
        somaxconn=_read_proc_int("/proc/sys/net/core/somaxconn", 4096),
        ephemeral_low=_read_proc_int("/proc/sys/net/ipv4/ip_local_port_range", 32768),
    )


def _spread(total: int, parts: int) -> list[int]:
    """``total`` split over ``parts`` as evenly as possible, the first parts taking the rest."""
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


def plan(
    sockets: int,
    processes: int,
    limits: Limits,
    *,
    base_port: int = DEFAULT_BASE_PORT,
    time_wait_share: float = DEFAULT_TIME_WAIT_SHARE,
) -> list[WorkerPlan]:
    """Split ``sockets`` over at least ``processes`` workers.

    TIME_WAIT takes ``time_wait_share`` of the sockets, but at most half of
    ``tcp_max_tw_buckets`` (beyond the cap the kernel silently skips TIME_WAIT, and other
    programs on the host need some). The rest hold descriptors: two listeners per worker, then
    ESTABLISHED pairs and CLOSE_WAIT/FIN_WAIT2 pairs; an odd socket left over becomes one more
    listener. More workers are used where the descriptor limit requires it.
    """
    if processes < 1:
        raise ValueError("at least one process is needed")
    budget = limits.fd_hard_limit - FD_RESERVE - 2 * BATCH
    if budget < 16:
        raise ValueError(f"RLIMIT_NOFILE hard limit {limits.fd_hard_limit} is too low")
    time_wait = min(round(sockets * time_wait_share), limits.max_tw_buckets // 2)
    held = sockets - time_wait
    workers = max(processes, math.ceil(held / budget))
    listeners = LISTENERS_PER_WORKER * workers
    if held < listeners:
        raise ValueError(
            f"{sockets} sockets are too few for {workers} workers "
            f"(each needs {LISTENERS_PER_WORKER} listeners); ask for more sockets"
        )
    if base_port < 1024 or base_port + workers * PORTS_PER_WORKER > limits.ephemeral_low:
        raise ValueError(
            f"listener ports {base_port}..{base_port + workers * PORTS_PER_WORKER} must lie "
            f"between 1024 and the ephemeral range (from {limits.ephemeral_low})"
        )
    rest = held - listeners
    established_pairs = round(rest * ESTABLISHED_SHARE / 2)
    half_closed_pairs = (rest - 2 * established_pairs) // 2
    listeners += rest - 2 * established_pairs - 2 * half_closed_pairs  # 0 or 1
    columns = zip(
        _spread(listeners, workers),
        _spread(established_pairs, workers),
        _spread(half_closed_pairs, workers),
        _spread(time_wait, workers),
        strict=True,
    )
    return [
        WorkerPlan(index, Mix(*column), base_port + index * PORTS_PER_WORKER)
        for index, column in enumerate(columns)
    ]


def total_mix(plans: list[WorkerPlan]) -> Mix:
    return Mix(
        listeners=sum(p.mix.listeners for p in plans),
        established_pairs=sum(p.mix.established_pairs for p in plans),
        half_closed_pairs=sum(p.mix.half_closed_pairs for p in plans),
        time_wait=sum(p.mix.time_wait for p in plans),
    )


# --- a worker ------------------------------------------------------------------------------------


class _StopRequested(Exception):
    """SIGTERM (or SIGINT) arrived: leave whatever loop is running and clean up."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _StopRequested(signal.Signals(signum).name)


class _Worker:
    def __init__(self, plan: WorkerPlan, deadline: float, parent_pid: int) -> None:
        self.plan = plan
        self.deadline = deadline
        self.parent_pid = parent_pid
        self.held: list[socket.socket] = []
        self.listeners: list[tuple[socket.socket, int]] = []
        self.connections = 0  # for choosing the next source address and listener
        self.time_wait_batches: deque[tuple[float, int]] = deque()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise _StopRequested("deadline")
        if os.getppid() != self.parent_pid:
            raise _StopRequested("controller gone")

    def listen(self) -> None:
        backlog = BATCH
        for port in range(self.plan.first_port, self.plan.first_port + PORTS_PER_WORKER):
            if len(self.listeners) == self.plan.mix.listeners:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                listener.bind((LISTEN_ADDRESS, port))
            except OSError:
                listener.close()  # taken by someone else: try the next port of our block
                continue
            self.held.append(listener)
            listener.listen(backlog)
            listener.settimeout(CONNECT_TIMEOUT)
            self.listeners.append((listener, port))
        if len(self.listeners) < self.plan.mix.listeners:
            raise RuntimeError(
                f"only {len(self.listeners)} of ports {self.plan.first_port}.."
                f"{self.plan.first_port + PORTS_PER_WORKER - 1} were free"
            )

    def connect_batch(
        self, count: int, keep: list[socket.socket]
    ) -> tuple[list[socket.socket], list[socket.socket]]:
        """``count`` (at most BATCH) connections to one listener: connect all, then accept
        all, so the accept queue never overflows and no SYN waits for a retransmission. Each
        socket goes into ``keep`` as soon as it exists, so a failure half-way leaks none."""
        self.check_time()
        listener, port = self.listeners[(self.connections // BATCH) % len(self.listeners)]
        clients: list[socket.socket] = []
        servers: list[socket.socket] = []
        for _ in range(count):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            keep.append(client)
            clients.append(client)
            client.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            client.bind((SOURCE_ADDRESSES[self.connections % len(SOURCE_ADDRESSES)], 0))
            client.settimeout(CONNECT_TIMEOUT)
            client.connect((LISTEN_ADDRESS, port))
            self.connections += 1
        for _ in range(count):
            server, _ = listener.accept()
            keep.append(server)
            servers.append(server)
        return clients, servers

    def pairs(self, total: int, *, half_close: bool) -> None:
        for start in range(0, total, BATCH):
            clients, _ = self.connect_batch(min(BATCH, total - start), self.held)
            if half_close:
                for client in clients:
                    client.shutdown(socket.SHUT_WR)

    def time_wait(self, total: int) -> None:
        """Client closes first, then the server: the client's end waits in TIME_WAIT."""
        for start in range(0, total, BATCH):
            count = min(BATCH, total - start)
            transient: list[socket.socket] = []
            try:
                clients, servers = self.connect_batch(count, transient)
                for sock in clients:
                    sock.close()
                for sock in servers:
                    sock.close()
            finally:
                for sock in transient:  # closing twice is harmless
                    sock.close()
            self.time_wait_batches.append((time.monotonic(), count))

    def refresh_time_wait(self) -> None:
        """Remake every batch whose TIME_WAIT has expired, so the count stays near its target."""
        now = time.monotonic()
        expired = 0
        while self.time_wait_batches and now - self.time_wait_batches[0][0] >= TIME_WAIT_SECONDS:
            expired += self.time_wait_batches.popleft()[1]
        if expired:
            self.time_wait(expired)

    def close_all(self) -> None:
        """Abort every socket (RST): nothing is left in TIME_WAIT or as an orphan."""
        linger = struct.pack("ii", 1, 0)
        for sock in self.held:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            sock.close()
        self.held.clear()


def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _worker_main(
    plan: WorkerPlan,
    deadline: float,
    parent_pid: int,
    channel: multiprocessing.connection.Connection,
) -> None:
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    worker = _Worker(plan, deadline, parent_pid)
    try:
        try:
            _raise_fd_limit()
            worker.listen()
            worker.pairs(plan.mix.established_pairs, half_close=False)
            worker.pairs(plan.mix.half_closed_pairs, half_close=True)
            worker.time_wait(plan.mix.time_wait)
            channel.send({"pid": os.getpid(), "ports": [port for _, port in worker.listeners]})
            while True:
                worker.check_time()
                worker.refresh_time_wait()
                time.sleep(max(0.0, min(0.5, worker.deadline - time.monotonic())))
        except _StopRequested:
            pass
        except Exception as error:  # report it to the controller, which stops the run
            with contextlib.suppress(OSError):
                channel.send({"pid": os.getpid(), "error": f"{type(error).__name__}: {error}"})
            raise SystemExit(1) from None
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # finish cleaning up once stopped
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        worker.close_all()


# --- the controller ------------------------------------------------------------------------------


@dataclass
class RunState:
    """What the controller writes to ``--state-file`` once the run is ready."""

    pid: int
    worker_pids: list[int]
    ports: list[int]
    target: dict[str, int]
    achieved: dict[str, int]
    sockets: int
    deadline_unix: float


def _format_counts(counts: dict[str, int]) -> str:
    return " ".join(f"{state}={counts.get(state, 0)}" for state in LOADGEN_STATES)


def _settle(ports: frozenset[int], target: dict[TcpState, int]) -> Counter[TcpState]:
    """Count with ss until the stable states reach their targets (FIN_WAIT2 waits for the
    ACK of the FIN), for at most SETTLE_SECONDS."""
    give_up = time.monotonic() + SETTLE_SECONDS
    while True:
        counts = count_states(run_ss(), ports)
        if all(counts[state] == target[state] for state in STABLE_STATES):
            return counts
        if time.monotonic() > give_up:
            return counts
        time.sleep(0.5)


def _say(text: str) -> None:
    print(f"loadgen: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    limits = host_limits()
    plans = plan(
        args.sockets,
        args.processes,
        limits,
        base_port=args.base_port,
        time_wait_share=args.time_wait_share,
    )
    mix = total_mix(plans)
    target = mix.counts()
    target_text = _format_counts({state.value: count for state, count in target.items()})
    _say(
        f"{args.sockets} sockets over {len(plans)} workers (RLIMIT_NOFILE hard limit "
        f"{limits.fd_hard_limit}); target {target_text}; ends in {args.seconds:g} s"
    )
    started = time.monotonic()
    deadline = started + args.seconds
    parent_pid = os.getppid()
    context = multiprocessing.get_context("fork")
    workers: list[multiprocessing.process.BaseProcess] = []
    channels: dict[multiprocessing.connection.Connection, int] = {}
    pidfile: Path | None = args.pidfile
    state_file: Path | None = args.state_file
    signal.signal(signal.SIGTERM, _raise_stop)
    try:
        if pidfile is not None:
            pidfile.write_text(f"{os.getpid()}\n")
        for worker_plan in plans:
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker_main,
                args=(worker_plan, deadline + WORKER_GRACE_SECONDS, os.getpid(), sender),
                name=f"loadgen-worker-{worker_plan.index}",
            )
            process.start()
            sender.close()
            workers.append(process)
            channels[receiver] = worker_plan.index
        ports: list[int] = []
        worker_pids: list[int] = []
        pending = dict(channels)
        while pending:
            if time.monotonic() > deadline:
                raise _StopRequested("deadline during setup")
            for ready in multiprocessing.connection.wait(list(pending), timeout=1.0):
                assert isinstance(ready, multiprocessing.connection.Connection)
                try:
                    message: dict[str, Any] = ready.recv()
                except EOFError:
                    message = {"error": "exited during setup"}
                index = pending.pop(ready)
                if "error" in message:
                    _say(f"worker {index} failed: {message['error']}")
                    return 1
                ports.extend(message["ports"])
                worker_pids.append(message["pid"])
        counts = _settle(frozenset(ports), target)
        achieved = {state.value: counts[state] for state in LOADGEN_STATES}
        state = RunState(
            pid=os.getpid(),
            worker_pids=sorted(worker_pids),
            ports=sorted(ports),
            target={state.value: count for state, count in target.items()},
            achieved=achieved,
            sockets=sum(achieved.values()),
            deadline_unix=time.time() + (deadline - time.monotonic()),
        )
        if state_file is not None:
            temporary = state_file.with_name(state_file.name + ".tmp")
            temporary.write_text(json.dumps(asdict(state), indent=1) + "\n")
            temporary.replace(state_file)
        short = [s.value for s in STABLE_STATES if counts[s] != target[s]]
        print(
            f"READY pid={os.getpid()} workers={len(workers)} sockets={state.sockets} "
            f"{_format_counts(achieved)} setup={time.monotonic() - started:.1f}s"
            + (f" SHORT={','.join(short)}" if short else ""),
            flush=True,
        )
        # Hold until the deadline, a stop signal, or a worker dying.
        while time.monotonic() < deadline:
            remaining = deadline - time.monotonic()
            gone = multiprocessing.connection.wait(
                [process.sentinel for process in workers], timeout=max(0.0, min(remaining, 5.0))
            )
            if gone:
                _say("a worker exited before the deadline; stopping")
                return 1
            if args.exit_with_parent and os.getppid() != parent_pid:
                _say("the process that started us is gone; stopping")
                return 0
        _say(f"{args.seconds:g} s are up; stopping")
        return 0
    except (_StopRequested, KeyboardInterrupt) as stop:
        _say(f"stopping ({stop or 'interrupted'})")
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _stop_workers(workers)
        for path in (pidfile, state_file):
            if path is not None:
                path.unlink(missing_ok=True)


def _stop_workers(workers: list[multiprocessing.process.BaseProcess]) -> None:
    """SIGTERM each worker we started, by pid; SIGKILL any that has not exited in time."""
    for process in workers:
        if process.is_alive():
            process.terminate()
    give_up = time.monotonic() + STOP_SECONDS
    for process in workers:
        process.join(timeout=max(0.1, give_up - time.monotonic()))
        if process.is_alive():
            _say(f"worker {process.pid} did not stop in {STOP_SECONDS:g} s; killing it")
            process.kill()
            process.join(timeout=5)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.loadgen",
        description="Hold N loopback TCP sockets in LISTEN, ESTABLISHED, CLOSE_WAIT, "
        "FIN_WAIT2 and TIME_WAIT over several processes, for a bounded time.",
    )
    parser.add_argument("--sockets", type=int, required=True, help="how many sockets in all")
    parser.add_argument(
        "--processes",
        type=int,
        default=16,
        help="workers to spread them over (more if the fd limit needs it; default 16)",
    )
    parser.add_argument(
        "--seconds", type=float, default=600.0, help="stop by itself after this (default 600)"
    )
    parser.add_argument("--pidfile", type=Path, help="write the controller's pid here")
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="also stop when the process that started this one exits (checked every 5 s)",
    )
    parser.add_argument("--state-file", type=Path, help="write ports and counts here as JSON")
    parser.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        help=f"first listener port; each worker uses a block of {PORTS_PER_WORKER}",
    )
    parser.add_argument(
        "--time-wait-share",
        type=float,
        default=DEFAULT_TIME_WAIT_SHARE,
        help="share of the sockets in TIME_WAIT (capped at half of tcp_max_tw_buckets)",
    )
    args = parser.parse_args(argv)
    if args.sockets < 1 or args.seconds <= 0 or not 0 <= args.time_wait_share < 1:
        parser.error("--sockets and --seconds must be positive, --time-wait-share in [0, 1)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except ValueError as error:
        _say(str(error))
        return 2


if __name__ == "__main__":
    sys.exit(main())
