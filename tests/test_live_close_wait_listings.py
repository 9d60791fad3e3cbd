"""A paste holding the same ``ss -tan`` listing twice, made for real on loopback (issue 22):
a server that ends every connection at once (an idle timeout of zero) and a client pool that
keeps its ends in CLOSE_WAIT until told to drop some. ``ss`` is the oracle for what stayed,
went and came between the two listings; tcphealth reads the pasted pair:

* the pool drops its oldest and opens as many new ones (the server closes those too): some
  closed, as many came -- client ends with the FIN alone, replaced: the peer's idle close;
* the pool only adds: none closed, more came -- a pile, a warning below the count, where the
  last listing alone is nothing.

The scenes are child processes stopped by pid (tests/test_live_verdict.py's Children), also
when a test fails; nothing leaves loopback, and every wait is bounded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tcphealth.cli import main
from tcphealth.diagnose.rules.close_wait import AGE_DECIDES, OWNER_UNKNOWN, PEER_IDLE_CLOSE
from tests.test_live_verdict import Children, children, wait_until

__all__ = ["children"]  # the fixture, shared with test_live_verdict

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc"),
    pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) as the oracle"),
]

# Accepts and closes every connection at once: its clients' ends go to CLOSE_WAIT.
CLOSES_AT_ONCE = """
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(128)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""

# A pool of N connections that never notices the server's close. On stdin: "drop K" closes
# the K oldest and opens K new ones; "add K" opens K more. Answers "done" to each.
POOL = """
import socket, sys
port = int(sys.argv[1])
pool = []
def grow(n):
    for _ in range(n):
        pool.append(socket.create_connection(("127.0.0.1", port)))
grow(int(sys.argv[2]))
print("ready", flush=True)
for line in sys.stdin:
    verb, n = line.split()
    if verb == "drop":
        for c in pool[: int(n)]:
            c.close()
        del pool[: int(n)]
    grow(int(n))
    print("done", flush=True)
"""


def ss_tan(port: int) -> str:
    """What a user pastes: ``ss -tan`` of the sockets toward the server's port."""
    return subprocess.run(
        ["ss", "-tan", f"dport = :{port}"], check=True, capture_output=True, text=True
    ).stdout


def close_wait_ends(listing: str) -> set[str]:
    """The local address:port of each CLOSE-WAIT row of an ``ss -tan`` listing."""
    return {row.split()[3] for row in listing.splitlines() if row.startswith("CLOSE-WAIT")}


def two_listings(children: Children, pooled: int, command: str) -> tuple[str, str]:
    """``ss -tan`` toward the server before and after the pool obeys ``command``, each once
    every pooled end is in CLOSE_WAIT."""
    _, port_text = children.start(CLOSES_AT_ONCE)
    port = int(port_text)
    children.start(POOL, port, pooled)
    pool = children.running[-1]
    assert pool.stdin is not None and pool.stdout is not None

    def settled(count: int) -> bool:
        return len(close_wait_ends(ss_tan(port))) == count

    wait_until(lambda: settled(pooled), "the pool's ends in CLOSE_WAIT")
    first = ss_tan(port)
    pool.stdin.write(command + "\n")
    pool.stdin.flush()
    assert pool.stdout.readline().strip() == "done"
    verb, number = command.split()
    after = pooled if verb == "drop" else pooled + int(number)
    wait_until(lambda: settled(after), "the pool's new ends in CLOSE_WAIT")
    return first, ss_tan(port)


def check(tmp_path: Path, *listings: str) -> tuple[int, list[dict[str, object]]]:
    path = tmp_path / "pasted.txt"
    path.write_text("".join(f"$ ss -tan\n{listing}" for listing in listings), "utf-8")
    result = CliRunner().invoke(main, ["check", "--from", str(path), "--format", "json"])
    assert result.exit_code in (0, 1, 2), result.output
    return result.exit_code, json.loads(result.stdout)["findings"]


def evidence(finding: dict[str, object]) -> dict[str, object]:
    items = finding["evidence"]
    assert isinstance(items, list)
    return {item["name"]: item["value"] for item in items}


def test_a_pool_replacing_ends_the_server_closed_is_the_peers_idle_close(
    children: Children, tmp_path: Path
) -> None:
    first, last = two_listings(children, 12, "drop 4")
    before, after = close_wait_ends(first), close_wait_ends(last)
    # The oracle: ss saw 4 of the first 12 go and 4 new come.
    assert (len(before), len(before - after), len(after - before)) == (12, 4, 4)

    code, findings = check(tmp_path, first, last)
    assert code == 1
    (finding,) = findings
    assert (finding["code"], finding["severity"], finding["blame"]) == (
        PEER_IDLE_CLOSE,
        "WARNING",
        "remote-peer",
    )
    seen = evidence(finding)
    assert seen["paste_listings"] == "12, 12"
    assert (seen["closed_between"], seen["came_between"]) == (4, 4)
    assert seen["stayed_in_every_listing"] == len(before & after)
    assert seen["close-wait-not-reading"] == 12  # the FIN alone in each, as ss shows
    assert all(row.split()[1] == "1" for row in last.splitlines() if "CLOSE-WAIT" in row)


def test_a_pool_that_only_grows_is_a_pile_where_one_listing_is_nothing(
    children: Children, tmp_path: Path
) -> None:
    first, last = two_listings(children, 3, "add 2")
    before, after = close_wait_ends(first), close_wait_ends(last)
    assert before < after and len(after) == 5  # the oracle: none went, two came

    code, findings = check(tmp_path, first, last)
    assert code == 1
    (finding,) = findings
    assert (finding["code"], finding["severity"], finding["blame"]) == (
        OWNER_UNKNOWN,
        "WARNING",
        "local-application",
    )
    seen = evidence(finding)
    assert (seen["paste_listings"], seen["closed_between"], seen["came_between"]) == ("3, 5", 0, 2)
    assert "so they pile up" in str(finding["summary"])

    # The last listing alone: five of one look, no owner and no age -- no warning, only that
    # their age decides (close-wait-age-decides, INFO).
    code, findings = check(tmp_path, last)
    assert code == 0
    (alone,) = findings
    assert (alone["code"], alone["severity"], alone["count"], alone["pid"]) == (
        AGE_DECIDES,
        "INFO",
        5,
        None,
    )
