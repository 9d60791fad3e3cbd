"""``tcphealth serve``: an HTTP endpoint Prometheus scrapes.

Each scrape of ``/metrics`` asks a :class:`SharedCollection` for the metrics. It collects (a
snapshot, its diagnosis, the metric families) only when the last collection is older than the
minimum interval, and scrapes that arrive while a collection runs wait for that one instead of
starting their own -- so two Prometheus servers scraping every 15 s cost one collection per
interval, not two. A collection that fails is logged and exported as
``tcphealth_collect_success 0``; the server carries on.

The HTTP side is prometheus_client's WSGI application (content negotiation: the text format,
or OpenMetrics for a scraper that asks for it; gzip) behind a small router that also answers
``/`` with what this is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import selectors
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from tcphealth import __version__
from tcphealth.render.prometheus import self_families

LOG = logging.getLogger("tcphealth.serve")

DEFAULT_HOST = "127.0.0.1"
# Not one of the ports the Prometheus wiki lists for other exporters (9100 node_exporter...).
DEFAULT_PORT = 9945
DEFAULT_MIN_INTERVAL = 10.0
# A collection of 300,000 sockets takes a few seconds; one still running after this is stuck.
DEFAULT_COLLECT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Collected:
    """One collection: its families (none when it failed), whether it worked, how long it took
    (wall seconds), and when it ended (on the collection's monotonic clock)."""

    families: tuple[Metric, ...]
    success: bool
    duration_seconds: float
    finished_at: float


class SharedCollection:
    """Runs ``collect`` at most once per ``min_interval`` seconds, shared by every caller."""

    def __init__(
        self,
        collect: Callable[[], Iterable[Metric]],
        min_interval: float = DEFAULT_MIN_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._collect = collect
        self._min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: Collected | None = None
        self.collections = 0  # how many times collect ran (for the tests and the log)

    def get(self) -> Collected:
        arrived = self._clock()
        with self._lock:
            last = self._last
            if last is not None and (
                last.finished_at >= arrived  # a collection ran while this caller waited
                or self._clock() - last.finished_at < self._min_interval
            ):
                return last
            self._last = self._run()
            return self._last

    def _run(self) -> Collected:
        started = self._clock()
        self.collections += 1
        try:
            built = tuple(self._collect())
            success = True
        except Exception as error:  # any failure is a metric and a log line, never a crash
            LOG.error("collection failed: %s", describe(error))
            built, success = (), False
        finished = self._clock()
        return Collected(built, success, finished - started, finished)


class CollectionFailed(Exception):
    """The forked collection failed; the message names the error it met (``InputUnreadable:
    ...``), or says it was killed or died."""


def describe(error: BaseException) -> str:
    if isinstance(error, CollectionFailed):
        return str(error)
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True)
class Carried:
    """What a forked collection hands back to the server besides its families, for the next
    collection to start from (the descriptor tables of :mod:`tcphealth.sources.fd_cache`):
    ``take`` runs in the child once it has collected, ``give`` in the server with its value."""

    take: Callable[[], object]
    give: Callable[[object], None]


def forked(
    collect: Callable[[], Iterable[Metric]],
    timeout: float = DEFAULT_COLLECT_TIMEOUT,
    carried: Carried | None = None,
) -> Callable[[], list[Metric]]:
    """``collect`` run in a child process forked for each collection, its families sent back
    through a pipe.

    Why: a collection builds hundreds of thousands of objects and frees them; in a process
    that lives for weeks the allocator keeps part of that memory (measured: resident memory
    growing by about 1 MiB per collection at 100,000 sockets). A child gives it all back when
    it exits, so the server stays at its idle size. The child has a single thread, so the
    sources may fork their own helpers (the fd walk beside the netlink decoding), which they
    refuse in the threaded server. A collection that hangs past ``timeout`` seconds is killed
    (by its pid) and counts as failed. Where fork() is missing, ``collect`` runs in place.
    ``carried``: state the child hands back to the server, which the next child inherits."""
    if not hasattr(os, "fork"):
        return lambda: list(collect())

    def run() -> list[Metric]:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: collect, send, leave without running any cleanup
            status = 0
            try:
                os.close(read_end)
                try:
                    families = list(collect())
                    kept = carried.take() if carried is not None else None
                    payload = pickle.dumps((True, (families, kept)), pickle.HIGHEST_PROTOCOL)
                except BaseException as error:
                    payload = pickle.dumps((False, describe(error)))
                with os.fdopen(write_end, "wb") as pipe:
                    pipe.write(payload)
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        os.close(write_end)
        try:
            data, finished = _read_until(read_end, time.monotonic() + timeout)
        finally:
            os.close(read_end)
            if not finished:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
        if not finished:
            raise CollectionFailed(f"no result within {timeout:g} s; the collection was killed")
        if not data:
            raise CollectionFailed(f"the collecting process ended without a result ({status})")
        ok, result = pickle.loads(data)  # from our own child
        if not ok:
            raise CollectionFailed(result)
        result, kept = result
        if carried is not None:
            carried.give(kept)
        peak = GaugeMetricFamily(
            "tcphealth_collect_max_resident_bytes",
            "Peak resident memory of the process that made the last collection (and of its "
            "helpers); the server itself stays at its idle size.",
            value=usage.ru_maxrss * 1024,  # Linux gives KiB
        )
        return [*result, peak]

    return run


def noting_path(run: Callable[[], list[Metric]]) -> Callable[[], list[Metric]]:
    """``run``, logging the way its collections are made (tcphealth_collect_path_info) the
    first time and whenever it changes: an operator sees in the log when a host falls back
    to the costlier full path (a container host: several network namespaces)."""
    last: list[tuple[str, str]] = []

    def noted() -> list[Metric]:
        families = run()
        for family in families:
            if family.name == "tcphealth_collect_path":
                labels = family.samples[0].labels
                now = (labels["path"], labels["reason"])
                if last != [now]:
                    if now[1]:
                        LOG.info("collecting by the %s path: %s", now[0], now[1])
                    else:
                        LOG.info("collecting by the %s path", now[0])
                    last[:] = [now]
        return families

    return noted


def _read_until(fd: int, deadline: float) -> tuple[bytes, bool]:
    """Everything written to ``fd`` until its writer closes it (True), or what came before
    ``deadline`` (False)."""
    chunks: list[bytes] = []
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks), True
            chunks.append(chunk)
    return b"".join(chunks), False


class TcphealthCollector:
    """The custom collector: the families of the shared collection, built at scrape time."""

    def __init__(self, shared: SharedCollection) -> None:
        self._shared = shared

    def collect(self) -> Iterator[Metric]:
        collected = self._shared.get()
        yield from collected.families
        yield from self_families(
            success=collected.success, duration_seconds=collected.duration_seconds
        )


def make_registry(shared: SharedCollection) -> CollectorRegistry:
    """Our metrics, and the standard ``process_*`` metrics of the exporter itself (its CPU
    seconds and memory: the cost of scraping it, measured where it is paid)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TcphealthCollector(shared))
    ProcessCollector(registry=registry)
    return registry


INDEX_PAGE = """<!DOCTYPE html>
<html><head><title>tcphealth exporter</title></head>
<body><h1>tcphealth exporter {version}</h1>
<p>The TCP connections of this host as Prometheus metrics: sockets per state and process,
the findings of the diagnosis by code and severity, listener queues, TIME_WAIT per destination,
kernel counters.</p>
<p><a href="/metrics">/metrics</a> (each scrape collects at most once every {interval:g} s;
concurrent scrapes share one collection).</p>
<p><code>tcphealth check</code> on this host explains every finding.</p>
</body></html>
"""


def make_app(registry: CollectorRegistry, min_interval: float) -> Callable[..., Iterable[bytes]]:
    """``/metrics`` for Prometheus, ``/`` for a person; anything else 404."""
    metrics_app = make_wsgi_app(registry)
    index = INDEX_PAGE.format(version=__version__, interval=min_interval).encode()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [index]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"Not found: try /metrics\n"]

    return app


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request, so a slow scrape never blocks the index page."""

    daemon_threads = True
    allow_reuse_address = True  # a restart is not refused for the last run's TIME_WAIT
    request_queue_size = 64  # the listen() backlog; socketserver's default is 5


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per scrape would drown the collection errors that matter


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:9945``, ``[::1]:9945``, ``:9945`` (every address), ``9945`` (loopback)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = DEFAULT_HOST, text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif not sep:
        pass
    elif host == "":
        host = "0.0.0.0"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"not ADDRESS:PORT: {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {text!r}")
    return host, port


def make_http_server(host: str, port: int, app: Callable[..., Iterable[bytes]]) -> _ThreadingServer:
    """Bound and listening, not yet serving; ``port`` 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Server(_ThreadingServer):
        address_family = family

    server = make_server(host, port, app, server_class=Server, handler_class=_QuietHandler)
    return server


def serve_until(server: WSGIServer, stop: threading.Event) -> None:
    """Serve on a thread until ``stop`` is set (SIGTERM, Ctrl-C), then close the socket."""
    thread = threading.Thread(target=server.serve_forever, name="tcphealth-http", daemon=True)
    thread.start()
    try:
        while not stop.wait(0.5):
            if not thread.is_alive():
                break
    finally:
        if thread.is_alive():  # shutdown() waits for serve_forever: only while it runs
            server.shutdown()
        server.server_close()
        thread.join(timeout=5)
