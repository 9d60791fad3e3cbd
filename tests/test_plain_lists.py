"""The list fields of a plain finding line (evidence, next, unchecked) split back into their
items on "; ": for every finding the scenario fixtures and the real-world captures give, and
for items that hold a ";" themselves."""

from __future__ import annotations

import codecs
import re
from dataclasses import replace
from pathlib import Path

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.model import Evidence, Finding, Severity
from tcphealth.pipeline import analyse_series
from tcphealth.render import plain
from tcphealth.sources import load, load_series
from tests.scenario_helpers import finding

ROOT = Path(__file__).resolve().parent.parent / "fixtures"
SNAPSHOTS = sorted(ROOT.glob("*.json"))
SERIES = sorted((ROOT / "series").glob("*.json"))
# Two captures are no TCP socket table (byte-order test vectors, a UDP table): reading them is
# an error, which tests/test_text_realworld.py checks; they have no findings to render.
NOT_TCP_TABLES = {
    "eminence-procfs_tcp6_ipv6-byteorder_vectors_old-bug-vs-fixed.txt",
    "prometheus-procfs_fixture_proc_net_tcp6_udp-style-header_linklocal.txt",
}
CAPTURES = sorted(
    path for path in (ROOT / "realworld").glob("*.txt") if path.name not in NOT_TCP_TABLES
)

_FIELD = re.compile(r' (\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def fields(line: str) -> dict[str, str]:
    """The ``key=value`` fields of a plain line, each value as written (quotes kept)."""
    return dict(_FIELD.findall(line))


def unescape(text: str) -> str:
    assert text.isascii(), text
    return codecs.decode(text, "unicode_escape")


def items(written: str) -> list[str]:
    """What a script gets from a list field: the value split on "; ", each part unescaped."""
    if written == "-":
        return []
    body = written[1:-1] if written.startswith('"') else written
    return [unescape(part) for part in body.split("; ")]


def expected_lists(found: Finding) -> dict[str, list[str]]:
    return {
        "evidence": [
            f"{item.name}={'-' if item.value is None else item.value}"
            + (f" ({item.detail})" if item.detail else "")
            for item in found.evidence
        ],
        "next": [step.removesuffix(".") for step in found.next_steps],
        "unchecked": list(found.unchecked),
    }


def findings_of(path: Path) -> list[Finding]:
    if path.parent.name == "series":
        return list(analyse_series(load_series(path)).findings)
    return diagnose(load(path))


def test_the_fixtures_are_there() -> None:
    assert len(SNAPSHOTS) >= 8 and len(SERIES) >= 4 and len(CAPTURES) >= 10


@pytest.mark.parametrize("path", SNAPSHOTS + SERIES + CAPTURES, ids=lambda path: path.name)
def test_every_list_field_splits_back_into_its_items(path: Path) -> None:
    found = findings_of(path)
    for each in found:
        written = fields(plain.finding_line(each))
        for name, wanted in expected_lists(each).items():
            assert items(written[name]) == wanted, (each.code, name)
            # Our own wording never needs the escape: only data from the host can.
            assert "\\x3b" not in written[name], (each.code, name)


def test_a_semicolon_inside_an_item_is_escaped_and_splitting_still_works() -> None:
    hostile = replace(
        finding("x", Severity.WARNING),
        evidence=(Evidence("established_client", "worker; rm", "holds 3 open connections"),),
        next_steps=("ss -tnp   # who; what", "Then this."),
        unchecked=("a;b",),
    )
    line = plain.finding_line(hostile)
    written = fields(line)
    assert written["evidence"] == '"established_client=worker\\x3b rm (holds 3 open connections)"'
    assert written["next"] == '"ss -tnp   # who\\x3b what; Then this"'
    assert written["unchecked"] == '"a\\x3bb"'
    assert items(written["next"]) == ["ss -tnp   # who; what", "Then this"]
    assert items(written["evidence"]) == [
        "established_client=worker; rm (holds 3 open connections)"
    ]
    assert items(written["unchecked"]) == ["a;b"]
    assert "\n" not in line
