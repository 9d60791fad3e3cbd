"""``tcphealth serve``: one shared collection per interval, failures as a metric, the HTTP
endpoints, a clean end on SIGTERM."""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from tcphealth.serve import (
    CollectionFailed,
    SharedCollection,
    forked,
    make_registry,
    parse_listen,
)
from tcphealth.sources import netlink
from tests import live_netns
from tests.fd_holder import holder
from tests.serve_helpers import ROOT, get, serving, stop

FIXTURE = ROOT / "fixtures" / "listener-not-accepting.json"
WAIT_SECONDS = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            self.calls += 1
            return self.now


def one_family(value: float = 1.0) -> list[Metric]:
    return [GaugeMetricFamily("tcphealth_test_value", "A test value.", value=value)]


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_concurrent_callers_share_the_running_collection() -> None:
    clock = FakeClock()
    release = threading.Event()
    started = threading.Event()
    runs: list[int] = []

    def collect() -> Iterable[Metric]:
        runs.append(1)
        started.set()
        assert release.wait(WAIT_SECONDS)
        return one_family(len(runs))

    shared = SharedCollection(collect, min_interval=0.0, clock=clock)
    results: list[object] = []
    first = threading.Thread(target=lambda: results.append(shared.get()))
    first.start()
    assert started.wait(WAIT_SECONDS)
    calls_before = clock.calls
    others = [threading.Thread(target=lambda: results.append(shared.get())) for _ in range(3)]
    for thread in others:
        thread.start()
    # Each waiting caller has read the clock on arrival: they came during the collection.
    wait_for(lambda: clock.calls >= calls_before + 3, "three callers to arrive")
    clock.now += 1.0  # the collection ends after they arrived
    release.set()
    for thread in [first, *others]:
        thread.join(WAIT_SECONDS)
    assert len(runs) == 1, "one collection for four concurrent callers"
    assert len(results) == 4 and all(result is results[0] for result in results)


def test_min_interval_bounds_collections_and_zero_collects_each_time() -> None:
    clock = FakeClock()
    runs: list[int] = []

    def collect() -> Iterable[Metric]:
        runs.append(1)
        return one_family()

    shared = SharedCollection(collect, min_interval=10.0, clock=clock)
    first = shared.get()
    clock.now += 9.5
    assert shared.get() is first and len(runs) == 1
    clock.now += 1.0
    assert shared.get() is not first and len(runs) == 2
    assert shared.collections == 2

    every = SharedCollection(collect, min_interval=0.0, clock=clock)
    every.get()
    clock.now += 0.001
    every.get()
    assert every.collections == 2


def test_a_failed_collection_is_a_metric_and_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    failing = [True]

    def collect() -> Iterable[Metric]:
        if failing[0]:
            raise PermissionError("/proc/net/tcp: permission denied")
        return one_family(7)

    shared = SharedCollection(collect, min_interval=5.0, clock=clock)
    registry = make_registry(shared)
    with caplog.at_level(logging.ERROR, logger="tcphealth.serve"):
        text = generate_latest(registry).decode()
    assert caplog.messages == [
        "collection failed: PermissionError: /proc/net/tcp: permission denied"
    ]
    found = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert found["tcphealth_collect_success"] == 0
    assert "tcphealth_test_value" not in found
    assert "process_cpu_seconds_total" in found  # the exporter's own cost, standard names
    failing[0] = False
    clock.now += 6.0  # a failure is kept for the interval too, then retried
    text = generate_latest(registry).decode()
    assert "tcphealth_collect_success 1.0" in text and "tcphealth_test_value 7.0" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9945", ("127.0.0.1", 9945)),
        ("[::1]:9945", ("::1", 9945)),
        (":9945", ("0.0.0.0", 9945)),
        ("9945", ("127.0.0.1", 9945)),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["localhost:http", "1.2.3.4:70000", ""])
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


# --- the server, as a process ------------------------------------------------------------------

pytestmark_live = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


@pytestmark_live
def test_serve_answers_and_ends_cleanly_on_sigterm() -> None:
    with serving("--from", str(FIXTURE), "--min-interval", "0") as served:
        status, kind, body = get(served.url + "/")
        assert status == 200 and kind.startswith("text/html")
        assert "tcphealth exporter" in body and 'href="/metrics"' in body
        status, kind, body = get(served.url + "/metrics")
        assert status == 200 and kind.startswith("text/plain; version=0.0.4")
        assert "tcphealth_collect_success 1.0" in body
        assert (
            'tcphealth_listener_accept_queue{endpoint="0.0.0.0:8000",process="gunicorn"} 129.0'
            in body
        )
        assert "tcphealth_collect_duration_seconds " in body
        # A file is read the full way, and the exposition says so.
        assert 'tcphealth_collect_path_info{path="full",reason="--from a file"} 1.0' in body
        status, kind, body = get(
            served.url + "/metrics", accept="application/openmetrics-text; version=1.0.0"
        )
        assert status == 200 and kind.startswith("application/openmetrics-text")
        assert body.endswith("# EOF\n")
        assert get(served.url + "/other")[0] == 404
        assert stop(served.process) == 0
        served.read_log()
        # Two scrapes of /metrics with --min-interval 0: two collections, no more.
        assert served.log[-1] == "tcphealth serve: stopped after 2 collections"
        # The way it collects is logged once, not at every collection.
        assert [line for line in served.log if "collecting by" in line] == [
            "tcphealth serve: collecting by the full path: --from a file"
        ]
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", served.port), 2):
            pass  # the port is closed


@pytestmark_live
def test_serve_survives_a_failing_collection(tmp_path: object) -> None:
    missing = ROOT / "fixtures" / "no-such-snapshot.json"
    with serving("--from", str(missing), "--min-interval", "0") as served:
        for _ in range(2):  # the server stays up and answers again
            status, _, body = get(served.url + "/metrics")
            assert status == 200
            assert "tcphealth_collect_success 0.0" in body
            assert "tcphealth_sockets" not in body
        served.read_log()
        failures = [line for line in served.log if "collection failed: " in line]
        assert len(failures) == 2, served.log
        assert failures[0].endswith("no-such-snapshot.json: No such file or directory")
        assert served.process.poll() is None


@pytestmark_live
def test_serve_live_sees_its_own_listening_socket() -> None:
    # --top 1000: the listener families label the N fullest listeners, ties by endpoint; with
    # the default 20, an idle exporter among more than 20 idle listeners on a busy host (other
    # tests' and other users' servers) is folded into 'other' -- this test failed that way once.
    with serving("--min-interval", "0", "--top", "1000") as served:
        status, _, body = get(served.url + "/metrics")
        assert status == 200 and "tcphealth_collect_success 1.0" in body
        # The exporter's own listener, as the kernel lists it, with its backlog.
        mine = f'endpoint="127.0.0.1:{served.port}"'
        lines = [line for line in body.splitlines() if mine in line]
        assert any(line.startswith("tcphealth_listener_backlog{") for line in lines), lines


_LIVE_NETLINK = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not netlink.available(),
    reason="needs netlink sock_diag",
)


def _collect_path(body: str) -> dict[str, str]:
    # The text format has no info type: a gauge named *_info.
    (family,) = [
        f for f in text_string_to_metric_families(body) if f.name == "tcphealth_collect_path_info"
    ]
    (sample,) = family.samples
    assert sample.value == 1
    return dict(sample.labels)


@_LIVE_NETLINK
def test_serve_of_its_own_namespace_takes_the_lean_path() -> None:
    with serving("--netns", "self", "--min-interval", "0") as served:
        for _ in range(2):
            status, _, body = get(served.url + "/metrics")
            assert status == 200 and "tcphealth_collect_success 1.0" in body
            assert _collect_path(body) == {"path": "lean", "reason": ""}
        served.read_log()
        assert [line for line in served.log if "collecting by" in line] == [
            "tcphealth serve: collecting by the lean path"
        ]


@pytest.fixture
def netns() -> Iterator[Callable[[str], live_netns.Namespace]]:
    yield from live_netns.namespaces()


@_LIVE_NETLINK
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, and every one read")
def test_serve_of_a_host_with_containers_says_it_takes_the_full_path(
    netns: Callable[[str], live_netns.Namespace],
) -> None:
    # A second network namespace with a process in it, as a container host has: every
    # namespace is read the object way, and the exposition and the log say why.
    container = netns("path")
    child = container.start(_LISTENING)
    assert live_netns.hear(child)["port"]
    with serving("--min-interval", "0") as served:
        status, _, body = get(served.url + "/metrics")
        assert status == 200 and "tcphealth_collect_success 1.0" in body
        assert _collect_path(body) == {"path": "full", "reason": "several network namespaces"}
        served.read_log()
        assert "tcphealth serve: collecting by the full path: several network namespaces" in (
            served.log
        )
    live_netns.say(child)


_LISTENING = """
import json, socket, sys
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); listener.listen()
print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
sys.stdin.readline()
"""


# The names of the helper processes below, and the states ss prints for them.
_HOLDER_NAMES = ("th23-opener", "th23-closer", "th23-swapper", "th23-still")
_SS_STATES = {"ESTAB": "ESTABLISHED"}


def _ss_counts(names: Iterable[str]) -> dict[tuple[str, str], int]:
    """Sockets per (process name, state) as ``ss -tanp`` lists them, for ``names``; a socket
    held by several processes of one name counts once."""
    listing = subprocess.run(
        ["ss", "-tanpH"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    counts: dict[tuple[str, str], int] = {}
    for line in listing.splitlines():
        state = line.split()[0]
        state = _SS_STATES.get(state, state.replace("-", "_"))
        for name in set(re.findall(r'\(\("([^"]*)",pid=', line)) & set(names):
            counts[name, state] = counts.get((name, state), 0) + 1
    return counts


def _metric_counts(body: str, names: Iterable[str]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for family in text_string_to_metric_families(body):
        if family.name != "tcphealth_process_sockets":
            continue
        for sample in family.samples:
            if sample.labels["process"] in names:
                counts[sample.labels["process"], sample.labels["state"]] = int(sample.value)
    return counts


@pytestmark_live
def test_serve_counts_follow_processes_that_change_between_scrapes() -> None:
    # The second scrape reads again only the descriptor tables that may have changed
    # (tcphealth.sources.fd_cache): a process that opened connections, one that closed some,
    # one that closed a connection and made two others (the same descriptor count: only its
    # sockets new in the dump and gone from it tell; made to a listener of ours, so that the
    # second look for late sockets, which reads listeners' and same-peer processes', does
    # not find them anyway), and one that did nothing. Each must count as ss says.
    with (
        socket.create_server(("127.0.0.1", 0)) as far_end,
        holder("th23-opener", 2) as opener,
        holder("th23-closer", 4) as closer,
        holder("th23-swapper", 3) as swapper,
        holder("th23-still", 2),
        serving("--min-interval", "0", "--top", "1000") as served,
    ):
        status, _, first = get(served.url + "/metrics", timeout=120)
        assert status == 200 and "tcphealth_collect_success 1.0" in first
        assert _metric_counts(first, _HOLDER_NAMES) == _ss_counts(_HOLDER_NAMES)
        opener.tell("open 3")
        closer.tell("close 2")
        swapper.tell(f"swapout {far_end.getsockname()[1]}")
        accepted = [far_end.accept()[0] for _ in range(2)]
        status, _, second = get(served.url + "/metrics", timeout=120)
        assert status == 200 and "tcphealth_collect_success 1.0" in second
        counts = _metric_counts(second, _HOLDER_NAMES)
        assert counts == _ss_counts(_HOLDER_NAMES)
        # What the helpers did, as they hold it: the listener and both ends of each connection.
        assert counts["th23-opener", "ESTABLISHED"] == 10
        assert counts["th23-closer", "CLOSE_WAIT"] == 2
        assert counts["th23-closer", "ESTABLISHED"] == 4
        assert counts["th23-swapper", "ESTABLISHED"] == 6
        assert counts["th23-still", "ESTABLISHED"] == 4
        assert all(counts[name, "LISTEN"] == 1 for name in _HOLDER_NAMES)
        for sock in accepted:
            sock.close()


# --- the collection in a forked child ------------------------------------------------------------


def test_forked_collection_runs_in_a_child_and_returns_its_families() -> None:
    parent = os.getpid()
    built = forked(lambda: one_family(os.getpid()))()
    assert [family.name for family in built] == [
        "tcphealth_test_value",
        "tcphealth_collect_max_resident_bytes",
    ]
    assert built[1].samples[0].value > 1 << 20  # a Python process: more than a MiB
    child = built[0].samples[0].value
    assert child != parent
    with pytest.raises(ProcessLookupError):
        os.kill(int(child), 0)  # reaped: not even a zombie is left


def test_forked_collection_reports_the_childs_error() -> None:
    def collect() -> Iterable[Metric]:
        raise ValueError("boom")

    with pytest.raises(CollectionFailed, match=r"^ValueError: boom$"):
        forked(collect)()


def test_forked_collection_that_dies_or_hangs_fails_and_is_reaped() -> None:
    def dies() -> Iterable[Metric]:
        os._exit(3)

    with pytest.raises(CollectionFailed, match="ended without a result"):
        forked(dies)()

    def hangs() -> Iterable[Metric]:
        time.sleep(60)
        return []

    run = forked(hangs, timeout=0.5)
    with pytest.raises(
        CollectionFailed, match=r"no result within 0.5 s; the collection was killed"
    ):
        run()


def test_a_failed_forked_collection_is_logged_by_its_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def collect() -> Iterable[Metric]:
        raise PermissionError("/proc/net/tcp: permission denied")

    shared = SharedCollection(forked(collect), min_interval=0.0)
    with caplog.at_level(logging.ERROR, logger="tcphealth.serve"):
        assert shared.get().success is False
    assert caplog.messages == [
        "collection failed: PermissionError: /proc/net/tcp: permission denied"
    ]
