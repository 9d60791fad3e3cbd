"""Starting and stopping ``tcphealth serve`` (and other servers) as child processes in tests:
bounded waits, stopped by pid, also when the test fails."""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 30.0


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: list[str]
    partial: bytes = b""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def read_log(self, seconds: float = 0.5) -> list[str]:
        """Lines written to stderr since the last read (waiting up to ``seconds``)."""
        assert self.process.stderr is not None
        fd = self.process.stderr.fileno()  # read unbuffered: select() sees only the pipe
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0 and selector.select(left):
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                *lines, self.partial = (self.partial + chunk).split(b"\n")
                self.log.extend(line.decode(errors="replace") for line in lines)
        return self.log


def get(url: str, accept: str | None = None, timeout: float = 30.0) -> tuple[int, str, str]:
    """(status, content type, body) of a GET; a 4xx/5xx is returned, not raised."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def stop(process: subprocess.Popen[bytes], seconds: float = 15.0) -> int:
    """SIGTERM, then SIGKILL if it has not ended after ``seconds``; its exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=seconds)
            raise
    return process.returncode


@contextlib.contextmanager
def serving(*args: str) -> Iterator[Served]:
    """``tcphealth serve --listen 127.0.0.1:0 ARGS``, its port read from its first log line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tcphealth", "serve", "--listen", "127.0.0.1:0", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    try:
        served = Served(process, 0, [])
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            for line in served.read_log(0.2):
                found = re.search(r"listening on http://127\.0\.0\.1:(\d+)/metrics", line)
                if found:
                    served.port = int(found.group(1))
            if served.port:
                break
        assert served.port, f"tcphealth serve did not start: {served.log}"
        yield served
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            stop(process)
        if process.stderr is not None:
            process.stderr.close()
