"""numpy is loaded only where sockets are read as columns (the lean path of `tcphealth serve`):
a report, `check` or `metrics --from` of a file runs without it, as before it was a
dependency (it adds about 20 MiB and 0.2 s to a process that loads it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import lean_scene

ROOT = Path(__file__).resolve().parent.parent
LEAK = ROOT / "fixtures" / "close-wait-leak.json"


def _imported(stderr: str) -> set[str]:
    """The modules ``python -X importtime`` says it imported."""
    return {
        line.rsplit("|", 1)[-1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:")
    }


@pytest.mark.parametrize(
    "args",
    [
        ["--from", str(LEAK), "--format", "plain"],
        ["check", "--from", str(LEAK)],
        ["metrics", "--from", str(LEAK), "-o", "-"],
    ],
    ids=["report", "check", "metrics"],
)
def test_commands_on_a_file_do_not_load_numpy(args: list[str]) -> None:
    ran = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tcphealth", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.stdout  # the command ran and printed its output
    imported = _imported(ran.stderr)
    assert "tcphealth.diagnose.rules.ports" in imported  # the listing is of this run
    assert "numpy" not in imported


def test_the_columns_load_numpy() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", "import sys, tcphealth.sources.lean; print('numpy' in sys.modules)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.stdout.strip() == "True"


@lean_scene.LIVE_NETLINK[0]  # live, and only where sock_diag answers
@lean_scene.LIVE_NETLINK[1]
def test_a_lean_collection_imports_no_numpy_module_the_server_has_not() -> None:
    """`serve` loads the lean path once and forks a child per scrape: a numpy module that is
    first imported during a collection is imported again in every child (numpy.ma, which
    np.unique asks for, cost 0.025 CPU-s a scrape)."""
    script = (
        "import sys, json\n"
        "import tcphealth.cli\n"
        "from tcphealth import exporter\n"
        "from tcphealth.sources import dump_relay, lean\n"
        "dump_relay.received_in_place()\n"
        "before = set(sys.modules)\n"
        "collected = lean.collect(scope='self')\n"
        "assert not isinstance(collected, str), collected\n"
        "snapshot, table = collected\n"
        "assert len(table.columns) > 0\n"
        "exporter.table_families_of(snapshot, table, lazy=lean.BULK_CODES)\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    new = json.loads(ran.stdout)
    assert [name for name in new if name.split(".")[0] == "numpy"] == []
