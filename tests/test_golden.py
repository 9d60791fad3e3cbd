"""Every fixture in every format against tests/golden/ (regenerate with ``make golden``)."""

from __future__ import annotations

import json
import re

import pytest

from tests.golden_update import CASES, GOLDEN, fixture_names, golden_path, produce

NAMES = fixture_names()


def test_every_fixture_has_every_golden_file_and_nothing_else() -> None:
    assert len(NAMES) >= 8
    expected = {golden_path(name, case).name for name in NAMES for case in CASES}
    assert {path.name for path in GOLDEN.iterdir()} == expected


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", NAMES)
def test_output_matches_golden(name: str, case: str) -> None:
    expected = golden_path(name, case).read_text(encoding="utf-8")
    actual = produce(name, case)
    assert actual == expected, f"run `make golden` if this change is intended ({name}.{case})"
    assert produce(name, case) == actual  # stable: the same input gives the same bytes


@pytest.mark.parametrize("name", NAMES)
def test_golden_invariants(name: str) -> None:
    table = golden_path(name, "table").read_text(encoding="utf-8")
    document = json.loads(golden_path(name, "json").read_text(encoding="utf-8"))
    # Only a next-step command runs past the width: it is never broken across lines (#24).
    commands = {
        step.partition("   # ")[0]
        for finding in document["findings"]
        for step in finding["next_steps"]
    }
    assert all(
        len(line) <= 100 or line.split(None, 1)[-1] in commands or line.strip() in commands
        for line in table.splitlines()
    )
    assert "\x1b" not in table and "\u2026" not in table
    assert "2024-05-01 12:00:00 UTC" in table.splitlines()[0]
    for line in golden_path(name, "plain").read_text(encoding="utf-8").splitlines():
        assert re.match(r"^[A-Z_0-9]+ ", line)
        assert " process=" in line and "\x1b" not in line
    assert document["host"]["taken_at"] == "2024-05-01T12:00:00Z"
    ndjson = golden_path(name, "ndjson").read_text(encoding="utf-8").splitlines()
    sockets = [json.loads(line) for line in ndjson if '"type": "socket"' in line]
    assert len(sockets) == document["summary"]["sockets"]
    check = golden_path(name, "check").read_text(encoding="utf-8").splitlines()
    assert re.fullmatch(r"exit [0-3]", check[0])
    assert check[1].startswith("TCPHEALTH ")
