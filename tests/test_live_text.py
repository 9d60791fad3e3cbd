"""As a new user would: CLOSE_WAIT sockets on loopback, ``ss -tanpoei > x.txt`` and
``netstat -tanpo > y.txt``, both read back with ``sources.load`` and compared with the live
/proc table for the same sockets (states, queues, owners).

The scene runs in a child process in its own network and pid namespaces
(tests/live_text_scene.py), so the host's other sockets and processes -- hundreds of thousands
of sockets on a busy machine -- stay out of it. The
child is waited for with a timeout and killed by its pid if it hangs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux"),
    pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)"),
    pytest.mark.skipif(shutil.which("netstat") is None, reason="needs netstat (net-tools)"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs ip (iproute2)"),
]

SCENE = Path(__file__).resolve().parent / "live_text_scene.py"


def run_scene(directory: Path) -> dict[str, Any]:
    child = subprocess.Popen(
        # A network namespace for the sockets, a pid namespace with its own /proc so that
        # netstat -p and the fd walk see only the scene's processes.
        ["unshare", "-n", "-p", "-f", "--mount-proc", sys.executable, str(SCENE), str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()  # by pid: only the child this test started
        child.communicate()
        raise
    if child.returncode != 0 and "unshare" in err and "Traceback" not in err:
        pytest.skip(f"cannot make a network namespace here: {err.strip()}")
    assert child.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def keyed(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """By local and remote endpoint; a listener by its local one (/proc prints its remote
    port as 0, ss and netstat as ``*``)."""
    return {
        (row["local"], "listener" if row["state"] == "LISTEN" else row["remote"]): row
        for row in rows
    }


def test_ss_and_netstat_text_agree_with_the_live_table(tmp_path: Path) -> None:
    result = run_scene(tmp_path)
    pid, port = result["pid"], result["port"]
    live, ss, netstat = keyed(result["live"]), keyed(result["ss"]), keyed(result["netstat"])
    assert set(ss) == set(live) == set(netstat)
    states = sorted(row["state"] for row in live.values())
    assert states == ["CLOSE_WAIT"] * 4 + ["FIN_WAIT2"] * 4 + ["LISTEN"]
    assert result["ss_source"] == f"ss:{tmp_path / 'x.txt'}"
    assert result["netstat_source"] == f"netstat-linux:{tmp_path / 'y.txt'}"

    for key, truth in live.items():
        for name, text in (("ss", ss[key]), ("netstat", netstat[key])):
            assert text["state"] == truth["state"], (name, key)
            assert text["recv_queue"] == truth["recv_queue"], (name, key)
            assert text["pids"] == truth["pids"], (name, key)
            assert text["owner"] == truth["owner"], (name, key)
            assert text["timer"] == truth["timer"] or truth["timer"] == "none", (name, key)
            if truth["state"] != "LISTEN":
                assert text["send_queue"] == truth["send_queue"], (name, key)

    listener = ss[(f"127.0.0.1:{port}", "listener")]
    assert listener["listen_backlog"] == 8  # only ss knows the backlog
    assert netstat[(f"127.0.0.1:{port}", "listener")]["listen_backlog"] is None
    close_wait = [row for row in live.values() if row["state"] == "CLOSE_WAIT"]
    owners = sorted((row["owner"], row["recv_queue"]) for row in close_wait)
    # three accepted (3 bytes + the FIN unread), one never accepted ("hello" + the FIN)
    assert owners == [("fd", 4), ("fd", 4), ("fd", 4), ("listener", 6)]
    assert {tuple(row["pids"]) for row in close_wait} == {(pid,)}
    # inodes: ss -e has them, netstat without -e does not
    assert {row["inode"] for row in ss.values()} == {row["inode"] for row in live.values()}
    assert {row["inode"] for row in netstat.values()} == {None}
