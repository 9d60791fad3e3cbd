"""Expected outputs for every fixture in every format: ``make golden`` (``python -m
tests.golden_update``) rewrites tests/golden/; tests/test_golden.py compares against them.

Each case runs the real command line (click's CliRunner) on ``fixtures/<name>.json``:

- ``<name>.table``  ``tcphealth --format table`` at 100 columns, no colour
- ``<name>.plain``  ``tcphealth --format plain``
- ``<name>.json``   ``tcphealth --format json``
- ``<name>.ndjson`` ``tcphealth --format ndjson --sockets``
- ``<name>.check``  ``exit N`` and the line of ``tcphealth check --nagios``
- ``<name>.prom``   ``tcphealth metrics``: the Prometheus exposition

The fixtures carry a fixed time and times are shown in UTC, and no configuration file is
searched for, so the files depend neither on the clock nor on the machine.
"""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

from click.testing import CliRunner

from tcphealth.cli import main as cli_main
from tcphealth.diagnose import config

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
GOLDEN = ROOT / "tests" / "golden"

CASES: dict[str, list[str]] = {
    "table": ["--format", "table"],
    "plain": ["--format", "plain"],
    "json": ["--format", "json"],
    "ndjson": ["--format", "ndjson", "--sockets"],
    "check": ["check", "--nagios"],
    "prom": ["metrics"],
}
ENVIRONMENT = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}


def fixture_names() -> list[str]:
    return sorted(path.stem for path in FIXTURES.glob("*.json"))


def produce(name: str, case: str) -> str:
    """What the command line prints for one fixture and one case."""
    args = [*CASES[case], "--from", str(FIXTURES / f"{name}.json")]
    with mock.patch.object(config, "SEARCH_PATHS", (), create=True):
        result = CliRunner().invoke(cli_main, args, env=ENVIRONMENT, catch_exceptions=False)
    if case == "check":
        return f"exit {result.exit_code}\n{result.stdout}"
    if result.exit_code != 0:
        raise RuntimeError(f"{name}.{case}: exit {result.exit_code}: {result.stderr}")
    return result.stdout


def golden_path(name: str, case: str) -> Path:
    return GOLDEN / f"{name}.{case}"


def main() -> int:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    expected = {golden_path(name, case) for name in fixture_names() for case in CASES}
    for stale in sorted(set(GOLDEN.iterdir()) - expected):
        stale.unlink()
        print(f"removed {stale.relative_to(ROOT)}")
    for path in sorted(expected):
        name, _, case = path.name.rpartition(".")
        text = produce(name, case)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
