"""A real Prometheus scrapes a real ``tcphealth serve``, both on loopback, while a child process
holds a CLOSE_WAIT leak and a full listener; Prometheus's own HTTP API must show the series with
the values the kernel shows (``ss``), and the shipped alert rules -- with their ``for:`` cut to
2 s -- must go to firing.

Prometheus is the Debian ``prometheus`` package (.ci/run installs it). Every process is started
here and stopped by pid, and Prometheus's data lives in the test's temporary directory, also
when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serve_helpers import ROOT, get, serving, stop

PROMETHEUS = shutil.which("prometheus")
pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux"),
    pytest.mark.skipif(
        PROMETHEUS is None and not os.environ.get("CI"),
        reason="prometheus (Debian package) is not installed; .ci/run installs it",
    ),
    pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss as the oracle"),
]

WAIT_SECONDS = 90.0  # Prometheus start, a few scrapes, a rule's 2 s `for:`; on a loaded host
LEAKER_NAME = "tcph-prom-leak"  # the holder's process name (comm: at most 15 characters)
LEAKED = 25  # CLOSE_WAIT held: above the default warning threshold (20)
FULL_BACKLOG = 2  # the full listener's backlog; it gets backlog + 2 clients, accepts none

# The holder: a CLOSE_WAIT leak (accepted connections whose clients closed, never closed
# here) and a listener that never accepts. It prints its two ports and holds everything until
# its standard input closes (or 300 s pass).
HOLDER = f"""
import select, socket, sys
with open("/proc/self/comm", "w") as comm:
    comm.write({LEAKER_NAME!r})
keep = []
leaky = socket.socket(); leaky.bind(("127.0.0.1", 0)); leaky.listen(64); keep.append(leaky)
for _ in range({LEAKED}):
    client = socket.create_connection(leaky.getsockname())
    server, _ = leaky.accept()
    keep.append(server)
    client.close()  # the peer closes; the server side never does: CLOSE_WAIT
full = socket.socket(); full.bind(("127.0.0.1", 0)); full.listen({FULL_BACKLOG}); keep.append(full)
for _ in range({FULL_BACKLOG} + 2):
    client = socket.socket(); client.setblocking(False); keep.append(client)
    try:
        client.connect(full.getsockname())
    except BlockingIOError:
        pass
print(leaky.getsockname()[1], full.getsockname()[1], flush=True)
select.select([sys.stdin], [], [], 300)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def holder() -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the holder prints at once, or dies (EOF)
        assert line, f"the holder failed: {process.stderr.read() if process.stderr else ''}"
        leaky, full = (int(word) for word in line.split())
        yield process, leaky, full
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def rules_with_short_for(directory: Path) -> Path:
    """The shipped rules, every ``for:`` cut to 2 s."""
    text = (ROOT / "deploy" / "prometheus" / "tcphealth-rules.yml").read_text()
    shortened, count = re.subn(r"^(\s+for: )\S+$", r"\g<1>2s", text, flags=re.MULTILINE)
    assert count >= 8
    path = directory / "rules.yml"
    path.write_text(shortened)
    return path


@contextlib.contextmanager
def prometheus(directory: Path, target_port: int) -> Iterator[str]:
    assert PROMETHEUS is not None, "prometheus is missing: apt-get install prometheus"
    rules = rules_with_short_for(directory)
    config = directory / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        f"rule_files: [{str(rules)!r}]\n"
        "scrape_configs:\n"
        "  - job_name: tcphealth\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target_port}']\n"
    )
    port = free_port()
    log = (directory / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.console.templates=/nonexistent",
            "--web.console.libraries=/nonexistent",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=directory,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(url, process), "Prometheus to be ready", directory)
        yield url
    finally:
        try:
            stop(process, 30)
        finally:
            log.close()


def _ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, f"prometheus exited with {process.returncode}"
    with contextlib.suppress(OSError):
        return get(url + "/-/ready", timeout=2)[0] == 200
    return False


def wait_until(condition: Callable[[], Any], what: str, directory: Path | None = None) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.5)
    log = (directory / "prometheus.log").read_text()[-3000:] if directory else ""
    raise AssertionError(f"timed out waiting for {what}\n{log}")


def query(url: str, promql: str) -> list[dict[str, Any]]:
    status, _, body = get(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    assert status == 200, body
    document = json.loads(body)
    assert document["status"] == "success", document
    result: list[dict[str, Any]] = document["data"]["result"]
    return result


def value_of(url: str, promql: str) -> float | None:
    result = query(url, promql)
    return float(result[0]["value"][1]) if len(result) == 1 else None


def firing(url: str, alertname: str, **labels: str) -> list[dict[str, Any]]:
    status, _, body = get(f"{url}/api/v1/alerts")
    assert status == 200, body
    return [
        alert
        for alert in json.loads(body)["data"]["alerts"]
        if alert["labels"].get("alertname") == alertname
        and alert["state"] == "firing"
        and all(alert["labels"].get(key) == value for key, value in labels.items())
    ]


def ss_listener(port: int) -> tuple[int, int]:
    """(Recv-Q, Send-Q) of the listener on 127.0.0.1:port, as ss shows it."""
    output = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split() for line in output.splitlines() if f"127.0.0.1:{port}" in line]
    assert len(rows) == 1, output
    return int(rows[0][1]), int(rows[0][2])


def test_prometheus_scrapes_serve_and_the_rules_fire(tmp_path: Path) -> None:
    with (
        holder() as (_, leaky_port, full_port),
        # --top 1000: other listeners on the machine (a benchmark's load generator holds 32)
        # must not fold this test's idle listener into 'other'; the folding has its own tests.
        serving("--min-interval", "1", "--top", "1000") as served,
        prometheus(tmp_path, served.port) as url,
    ):
        process = f'process="{LEAKER_NAME}"'
        leak = f'tcphealth_process_sockets{{{process},state="CLOSE_WAIT"}}'
        assert wait_until(lambda: value_of(url, leak), "the CLOSE_WAIT series", tmp_path) == LEAKED
        assert value_of(url, 'up{job="tcphealth"}') == 1
        assert value_of(url, "tcphealth_collect_success") == 1

        # The full listener, against ss: the accept queue over its limit, the limit itself.
        endpoint = f'endpoint="127.0.0.1:{full_port}"'
        queue = wait_until(
            lambda: value_of(url, f"tcphealth_listener_accept_queue{{{endpoint}}}"),
            "the accept-queue series",
            tmp_path,
        )
        backlog = value_of(url, f"tcphealth_listener_backlog{{{endpoint}}}")
        assert (queue, backlog) == ss_listener(full_port) == (FULL_BACKLOG + 1, FULL_BACKLOG)
        # The leaky listener has room and nothing waiting.
        leaky = f'endpoint="127.0.0.1:{leaky_port}"'
        assert value_of(url, f"tcphealth_listener_accept_queue{{{leaky}}}") == 0

        # The findings, and the shipped rules going to firing on them.
        codes = query(url, f"tcphealth_finding_sockets{{{process}}}")
        found = {item["metric"]["code"]: float(item["value"][1]) for item in codes}
        assert found.get("listen-queue-full") == FULL_BACKLOG + 1, found
        leak_codes = {code for code in found if code.startswith("close-wait-")}
        assert len(leak_codes) == 1 and found[leak_codes.pop()] == LEAKED, found
        close_wait = wait_until(
            lambda: firing(url, "TcphealthCloseWaitLeak", process=LEAKER_NAME),
            "TcphealthCloseWaitLeak to fire",
            tmp_path,
        )
        assert close_wait[0]["labels"]["severity"] == "warning"
        assert close_wait[0]["annotations"]["summary"].startswith(
            f"{LEAKER_NAME} on 127.0.0.1:{served.port} holds {LEAKED} connections in CLOSE_WAIT"
        )
        full = wait_until(
            lambda: firing(
                url, "TcphealthListenerQueueFull", code="listen-queue-full", process=LEAKER_NAME
            ),
            "TcphealthListenerQueueFull to fire",
            tmp_path,
        )
        assert full[0]["labels"]["endpoint"] == f"127.0.0.1:{full_port}"
        assert full[0]["labels"]["severity"] == "critical"
        # Nothing is wrong with collecting: that rule stays quiet.
        assert not firing(url, "TcphealthCollectFailing")
