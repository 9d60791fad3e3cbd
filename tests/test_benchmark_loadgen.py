"""The benchmark's load generator: its plan adds up, it reaches the per-state counts it promises
(``ss -tan`` is the oracle), and it stops cleanly by pid, or by itself, leaving no worker and
no held socket behind. Small (200 sockets, 2 workers) and bounded: no timing is asserted."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import loadgen
from benchmarks.sstable import STABLE_STATES, count_states, parse_ss, run_ss
from tcphealth.model import TcpState

REPO = Path(__file__).resolve().parent.parent
# A port block of its own, apart from the default one a full benchmark run may be using.
BASE_PORT = 28000
SOCKETS = 200
PROCESSES = 2

LIMITS = loadgen.Limits(
    fd_hard_limit=20000, max_tw_buckets=131072, somaxconn=4096, ephemeral_low=32768
)


@pytest.mark.parametrize("sockets", [200, 10_000, 100_000, 300_000, 1_000_001])
def test_plan_adds_up_and_respects_the_fd_limit(sockets: int) -> None:
    plans = loadgen.plan(sockets, 16, LIMITS)
    total = loadgen.total_mix(plans)
    assert total.sockets == sockets
    assert sum(total.counts().values()) == sockets
    assert len(plans) >= 16
    budget = LIMITS.fd_hard_limit - loadgen.FD_RESERVE
    assert all(p.mix.held <= budget for p in plans)
    assert all(p.mix.listeners >= loadgen.LISTENERS_PER_WORKER for p in plans)
    assert total.time_wait <= LIMITS.max_tw_buckets // 2
    ports = [p.first_port for p in plans]
    assert len(set(ports)) == len(ports)


def test_plan_uses_more_processes_when_the_fd_limit_is_low() -> None:
    low = loadgen.Limits(
        fd_hard_limit=2048, max_tw_buckets=131072, somaxconn=4096, ephemeral_low=32768
    )
    plans = loadgen.plan(20_000, 2, low)
    assert len(plans) > 2
    assert all(p.mix.held <= 2048 - loadgen.FD_RESERVE for p in plans)


def test_plan_refuses_too_few_sockets_and_ports_in_the_ephemeral_range() -> None:
    with pytest.raises(ValueError, match="too few"):
        loadgen.plan(10, 16, LIMITS)
    with pytest.raises(ValueError, match="ephemeral"):
        loadgen.plan(1000, 16, LIMITS, base_port=32700)


def test_ss_parser_reads_every_address_form() -> None:
    text = (
        "ESTAB 0 0 127.0.0.2:40312 127.0.0.1:20001\n"
        "LISTEN 0 4096 [::ffff:127.0.0.1]:80 [::]:*\n"
        "TIME-WAIT 0 0 [fe80::1%lo]:22 [::1]:5000\n"
    )
    rows = parse_ss(text)
    assert [r.state for r in rows] == [TcpState.ESTABLISHED, TcpState.LISTEN, TcpState.TIME_WAIT]
    assert (rows[1].local_address, rows[1].local_port, rows[1].remote_port) == (
        "::ffff:127.0.0.1",
        80,
        None,
    )
    assert rows[2].local_address == "fe80::1"
    assert count_states(rows, frozenset({20001})) == {TcpState.ESTABLISHED: 1}


def _alive(pid: int) -> bool:
    """True while the pid exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "State:\tZ" not in status


def _read_ready(process: subprocess.Popen[str], seconds: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if selector.select(timeout=0.5):
                line = process.stdout.readline()
                if line.startswith("READY"):
                    return line
                if not line:
                    break
    raise AssertionError(f"no READY line within {seconds} s (exit code {process.poll()})")


@pytest.fixture
def generator(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    pidfile, state_file = tmp_path / "loadgen.pid", tmp_path / "loadgen.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.loadgen",
            f"--sockets={SOCKETS}",
            f"--processes={PROCESSES}",
            "--seconds=20",
            f"--base-port={BASE_PORT}",
            f"--pidfile={pidfile}",
            f"--state-file={state_file}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process, pidfile, state_file
    finally:
        if process.poll() is None:
            process.kill()  # by pid: only the controller this test started
        process.wait(timeout=30)
        assert process.stdout is not None
        process.stdout.close()


@pytest.mark.live
@pytest.mark.benchmark
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux")
@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) as the oracle")
def test_reaches_the_counts_and_stops_by_pid(
    generator: tuple[subprocess.Popen[str], Path, Path],
) -> None:
    process, pidfile, state_file = generator
    ready = _read_ready(process, 20)
    state = json.loads(state_file.read_text())
    assert int(pidfile.read_text()) == process.pid == state["pid"]
    assert f"pid={process.pid}" in ready
    assert len(state["worker_pids"]) == PROCESSES
    ports = frozenset(state["ports"])
    assert len(ports) == PROCESSES * loadgen.LISTENERS_PER_WORKER

    counts = count_states(run_ss(), ports)
    target = {TcpState(name): count for name, count in state["target"].items()}
    assert sum(target.values()) == SOCKETS
    for stable in STABLE_STATES:
        assert counts[stable] == target[stable], stable
    # TIME_WAIT left by an earlier run on the same ports may still be counting down.
    assert counts[TcpState.TIME_WAIT] >= target[TcpState.TIME_WAIT]
    assert all(row.local_address.startswith("127.") for row in run_ss() if row.local_port in ports)

    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert not any(_alive(pid) for pid in state["worker_pids"])
    assert not pidfile.exists() and not state_file.exists()
    after = count_states(run_ss(), ports)
    assert all(after[stable] == 0 for stable in STABLE_STATES), after


@pytest.mark.live
@pytest.mark.benchmark
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux")
def test_ends_by_itself_after_its_time(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.loadgen",
            "--sockets=40",
            "--processes=2",
            "--seconds=2",
            f"--base-port={BASE_PORT + 64}",
            f"--state-file={state_file}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("READY")
    assert "are up; stopping" in completed.stderr
    assert not state_file.exists()


@pytest.mark.live
@pytest.mark.benchmark
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux")
def test_exits_with_its_parent(tmp_path: Path) -> None:
    """Started by a shell that then exits, the generator stops within its 5 s check."""
    state_file = tmp_path / "state.json"
    command = (
        f"{sys.executable} -m benchmarks.loadgen --sockets=40 --processes=2 --seconds=60 "
        f"--base-port={BASE_PORT + 128} --state-file={state_file} --exit-with-parent "
        ">/dev/null 2>&1 & echo $!; sleep 3"
    )
    shell = subprocess.run(
        ["sh", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    pid = int(shell.stdout.split()[0])
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)  # by pid: the generator this test started
        raise AssertionError("the generator outlived the shell that started it")
    assert not state_file.exists()
