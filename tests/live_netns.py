"""Network namespaces of a test's own, with children talking over a pipe: what the live tests
that need dropped packets or their own sysctls share (test_live_limits,
test_live_paste_readings, test_live_error_lines), and how those read a paste made from them.
Each test module keeps its own ``netns`` fixture as ``yield from namespaces()``, and takes its
marks from :func:`lab_marks`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tcphealth.cli import main
from tcphealth.model import Snapshot
from tcphealth.sources import collect_live

PREFIX = "thlab"  # lab/netns_lab.py's: its leftover check covers these namespaces too
CHILD_LIMIT = 40  # seconds any child may live; every case here ends in under 10
SETTLE = 10.0  # the most any wait for the kernel may take

# Where each tool a lab test may need comes from, for the reason it is skipped without it.
_PACKAGE = {"ip": "iproute2", "ss": "iproute2", "nstat": "iproute2", "nft": "nftables",
            "netstat": "net-tools"}  # fmt: skip


def lab_marks(*tools: str) -> list[pytest.MarkDecorator]:
    """A module's ``pytestmark`` for tests that make network namespaces: the ``lab`` marker,
    Linux, root, and each of ``tools`` on PATH."""
    return [
        pytest.mark.lab,
        pytest.mark.skipif(
            not sys.platform.startswith("linux"), reason="network namespaces are Linux"
        ),
        pytest.mark.skipif(os.geteuid() != 0, reason="creating network namespaces needs root"),
        *(
            pytest.mark.skipif(
                shutil.which(tool) is None, reason=f"needs {tool} ({_PACKAGE[tool]})"
            )
            for tool in tools
        ),
    ]


def until(condition: Callable[[], bool]) -> None:
    """Wait for the kernel to reach a state (bounded by SETTLE)."""
    deadline = time.monotonic() + SETTLE
    while not condition():
        assert time.monotonic() < deadline, "the kernel did not reach the state in time"
        time.sleep(0.05)


def check_paste(tmp_path: Path, name: str, text: str) -> tuple[int, list[dict[str, Any]]]:
    """``tcphealth check --from`` a paste written to ``tmp_path/name``: its exit code and the
    findings of its JSON."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["check", "--from", str(path), "--format", "json"])
    assert result.exit_code in (0, 1, 2), result.output
    findings: list[dict[str, Any]] = json.loads(result.stdout)["findings"]
    return result.exit_code, findings


def with_code(findings: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [finding for finding in findings if finding["code"] == code]


def run(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        list(args), check=True, capture_output=True, text=True, input=stdin, timeout=30
    )
    return done.stdout


class Namespace:
    """A network namespace with lo up, the given sysctls, and a child talking over a pipe."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.children: list[subprocess.Popen[str]] = []

    def run(self, *args: str) -> str:
        return run("ip", "netns", "exec", self.name, *args)

    def sysctl(self, **settings: str | int) -> None:
        for key, value in settings.items():
            self.run("sysctl", "-qw", f"{key}={value}")

    def nft(self, ruleset: str) -> None:
        run("ip", "netns", "exec", self.name, "nft", "-f", "-", stdin=ruleset)

    def ss(self, *args: str) -> list[str]:
        return self.run("ss", "-Htn", *args).splitlines()

    def start(self, script: str) -> subprocess.Popen[str]:
        # The script's input is the pipe: each line from the test says go on.
        command = ["ip", "netns", "exec", self.name, "timeout", str(CHILD_LIMIT)]
        child = subprocess.Popen(
            [*command, sys.executable, "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.children.append(child)
        return child

    def look(self) -> Snapshot:
        return collect_live("netlink", netns=self.name, with_processes=False)


def say(child: subprocess.Popen[str], line: str = "go") -> None:
    assert child.stdin is not None
    child.stdin.write(line + "\n")
    child.stdin.flush()


def hear(child: subprocess.Popen[str]) -> dict[str, Any]:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, f"the child ended early (exit {child.wait(timeout=CHILD_LIMIT)})"
    answer: dict[str, Any] = json.loads(line)
    return answer


def namespaces() -> Iterator[Callable[[str], Namespace]]:
    """The body of a ``netns`` fixture: ``make(label)`` adds a namespace; afterwards, also when
    the test failed, its children are killed by their handles and the namespaces deleted."""
    made: list[Namespace] = []

    def make(label: str) -> Namespace:
        name = f"{PREFIX}{label}{os.getpid()}x{len(made)}"
        run("ip", "netns", "add", name)
        namespace = Namespace(name)
        made.append(namespace)
        run("ip", "-n", name, "link", "set", "lo", "up")
        return namespace

    yield make
    for namespace in made:
        for child in namespace.children:
            if child.poll() is None:
                child.kill()  # our own child, by its handle
            child.wait(timeout=CHILD_LIMIT)
            for pipe in (child.stdin, child.stdout):
                if pipe is not None:
                    pipe.close()
        subprocess.run(["ip", "netns", "del", namespace.name], capture_output=True, timeout=30)


# A listener that never accepts and CONNECTS non-blocking connects to it, for the SYN queue:
# with the final ACKs dropped (drop_final_acks) the handshakes stay half open, as in a flood.
_HALF_OPEN = """
import json, socket, sys
listener = socket.socket(); listener.bind(("ADDRESS", PORT)); listener.listen(BACKLOG)
clients = []
for _ in range(CONNECTS):
    s = socket.socket(); s.setblocking(False)
    try:
        s.connect(("ADDRESS", PORT))
    except BlockingIOError:
        pass
    clients.append(s)
print(json.dumps({"connects": len(clients)}), flush=True)
sys.stdin.readline()
"""

_DROP_FINAL_ACKS = """
table inet TABLE {
  chain input {
    type filter hook input priority 0
    tcp dport PORT tcp flags & (syn | ack) == ack drop
  }
}
"""


def half_open_script(address: str, port: int, backlog: int, connects: int) -> str:
    """The child's script: it prints ``{"connects": N}`` and holds everything until told."""
    return (
        _HALF_OPEN.replace("ADDRESS", address)
        .replace("PORT", str(port))
        .replace("BACKLOG", str(backlog))
        .replace("CONNECTS", str(connects))
    )


def drop_final_acks(table: str, port: int) -> str:
    """An nft table (named ``table``) dropping the final ACK of every handshake to ``port``."""
    return _DROP_FINAL_ACKS.replace("TABLE", table).replace("PORT", str(port))
