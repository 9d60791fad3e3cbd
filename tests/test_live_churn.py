"""Sockets that open and close, and processes that start and exit, while tcphealth looks:
100 collections (netlink and procfs in turn, with the process walk) during churn, each
snapshot consistent with itself. The scene (tests/churn_scene.py) runs in network and pid
namespaces of its own, so it sees only its own sockets and processes and takes seconds however
busy the host is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for the namespaces"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs ip (iproute2)"),
]
REPO = Path(__file__).resolve().parent.parent
RUNS = 100
# Network and pid namespaces with their own /proc: the scene sees only itself.
UNSHARE = ["unshare", "-n", "-p", "-f", "--mount-proc"]


def test_a_hundred_scans_during_churn_stay_consistent() -> None:
    child = subprocess.Popen(
        [*UNSHARE, sys.executable, "-m", "tests.churn_scene", str(RUNS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        out, err = child.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        child.kill()  # by pid: unshare, whose namespace then ends everything in it
        child.communicate()
        raise
    assert child.returncode == 0, err
    summary = json.loads(out)
    assert summary["runs"] == RUNS
    # The churn was real: forked children were caught holding sockets.
    assert summary["children_seen"] > 0, summary
    assert summary["sockets"] > RUNS, summary
    print(summary)  # seen with -s: how much churn the scans met
