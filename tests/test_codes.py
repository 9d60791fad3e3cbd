"""Finding codes are declared once, by the rule that emits them: these tests run every fixture,
the series fixtures and generated snapshots through each rule's check and each rule's series
step, and fail when a rule emits a code (or a severity) it did not declare; and they fail when
the README's table of codes and the catalogue disagree."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings

from tcphealth import sources
from tcphealth.cli import main
from tcphealth.diagnose import CODES, RULES, catalogue, diagnose, finding_order
from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rule import Rule, Window
from tcphealth.diagnose.series import diagnose_series
from tcphealth.errors import InputError
from tcphealth.model import Finding, Severity, Snapshot
from tests.snapshot_strategies import snapshots

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
README = (REPO / "README.md").read_text(encoding="utf-8")


def _sensitive() -> Thresholds:
    """Thresholds so low that nearly anything a rule looks at becomes a finding, so that the
    small generated snapshots reach the rules' code paths too."""
    low: dict[str, object] = {}
    for spec in dataclasses.fields(Thresholds):
        name, default = spec.name, getattr(Thresholds(), spec.name)
        if name.endswith("_warning_ratio"):
            low[name] = 0.01
        elif name.endswith("_critical_ratio"):
            low[name] = 0.02
        elif name.endswith("_warning") and isinstance(default, int):
            low[name] = 1
        elif name.endswith("_critical") and isinstance(default, int):
            low[name] = 2
        elif name.endswith("_min_retransmits") or name == "established_recv_queue_bytes":
            low[name] = 1
    return dataclasses.replace(Thresholds(), **low)  # type: ignore[arg-type]


THRESHOLDS = (Thresholds(), _sensitive())


def _undeclared(rule: Rule, findings: list[Finding]) -> list[tuple[str, str]]:
    declared = {code.name: code for code in rule.codes}
    wrong: list[tuple[str, str]] = []
    for finding in findings:
        code = declared.get(finding.code)
        if code is None:
            wrong.append((finding.code, "not declared"))
        elif finding.severity not in code.severities:
            wrong.append((finding.code, f"severity {finding.severity.label} not declared"))
    return wrong


def _check_snapshot(snapshot: Snapshot) -> list[Finding]:
    """Every rule's check over ``snapshot``; fails on a code its rule did not declare."""
    found: list[Finding] = []
    for thresholds in THRESHOLDS:
        index = SnapshotIndex.build(snapshot)
        for rule in RULES:
            if rule.check is None:
                continue
            findings = rule.check(index, thresholds)
            assert _undeclared(rule, findings) == [], rule.name
            found.extend(findings)
    return found


def _check_series(series: list[Snapshot]) -> list[Finding]:
    """Every rule's step, in the registry's order, as diagnose_series runs them. A finding a
    step returns that it did not receive must carry a code that step's rule declared, or the
    code of a finding it received (evidence added to another rule's finding)."""
    made: list[Finding] = []
    for thresholds in THRESHOLDS:
        findings = diagnose(series[-1], thresholds)
        facts = diagnose_series(series, thresholds)[1]
        window = Window(series, facts.ages, facts, CODES)
        for rule in RULES:
            if rule.step is None:
                continue
            before = {id(finding) for finding in findings}
            codes_before = {finding.code for finding in findings}
            after = rule.step(window, list(findings), thresholds)
            new = [f for f in after if id(f) not in before and f.code not in codes_before]
            assert _undeclared(rule, new) == [], rule.name
            made.extend(new)
            findings = after
    return made


def _snapshot_fixtures() -> Iterator[Path]:
    yield from sorted(FIXTURES.glob("*.json"))
    yield from sorted((FIXTURES / "realworld").glob("*.txt"))


# Real-world files that hold no socket table of ours (source code quoting /proc rows, a UDP
# table): other tests check that they are refused.
NOT_A_TABLE = {
    "eminence-procfs_tcp6_ipv6-byteorder_vectors_old-bug-vs-fixed.txt",
    "prometheus-procfs_fixture_proc_net_tcp6_udp-style-header_linklocal.txt",
}


def _loadable() -> Iterator[Path]:
    return (path for path in _snapshot_fixtures() if path.name not in NOT_A_TABLE)


@pytest.mark.parametrize("path", list(_snapshot_fixtures()), ids=lambda p: p.name)
def test_every_code_a_fixture_gives_is_declared_by_its_rule(path: Path) -> None:
    if path.name in NOT_A_TABLE:
        with pytest.raises(InputError):
            sources.load(path)
        return
    _check_snapshot(sources.load(path))


@pytest.mark.parametrize("path", sorted((FIXTURES / "series").glob("*.json")), ids=lambda p: p.name)
def test_every_code_a_series_gives_is_declared_by_its_rule(path: Path) -> None:
    series = sources.load_series(path)
    made = {finding.code for finding in _check_series(series)}
    # What each series fixture is there to show is made by a step, not only by a check.
    assert SERIES_SHOWS[path.name] <= made


SERIES_SHOWS = {
    "close-wait-leak.json": set(),  # a leak: the snapshot's finding stands, only annotated
    "close-wait-slow-close.json": {"close-wait-slow-close"},
    "listen-overflows-rising.json": {"listen-overflows-rising"},
    "syn-sent-stuck.json": {"syn-sent-stuck"},
    "syn-queue-overflow-rising.json": {"syn-queue-overflow-rising"},
    "tcp-memory-aborts-rising.json": {"tcp-memory-aborts-rising"},
    "receive-drops-rising.json": {"receive-drops-rising"},
}


def test_the_fixtures_reach_most_codes() -> None:
    """The declaration check above means little if the fixtures never emit a code: most of
    the catalogue must be reached by them."""
    reached: set[str] = set()
    for path in _loadable():
        reached |= {finding.code for finding in _check_snapshot(sources.load(path))}
    for path in sorted((FIXTURES / "series").glob("*.json")):
        reached |= {finding.code for finding in _check_series(sources.load_series(path))}
    assert len(reached) >= len(CODES) // 2, sorted(set(CODES) - reached)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots())
def test_every_code_a_generated_snapshot_gives_is_declared_by_its_rule(
    snapshot: Snapshot,
) -> None:
    _check_snapshot(snapshot)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), snapshots())
def test_every_code_a_generated_series_gives_is_declared_by_its_rule(
    first: Snapshot, second: Snapshot
) -> None:
    second = dataclasses.replace(
        second, host=dataclasses.replace(second.host, taken_at=first.host.taken_at + 10.0)
    )
    _check_series([first, second, second])


def test_a_code_a_rule_did_not_declare_is_caught() -> None:
    """The check above can fail: a rule whose check emits another rule's code is refused."""
    rule = next(r for r in RULES if r.name == "descriptors")
    stray = Finding(
        code="listen-queue-full",
        severity=Severity.CRITICAL,
        state=None,
        blame=next(iter(type(_any_finding().blame))),
        subject=_any_finding().subject,
        count=1,
        summary="",
    )
    assert _undeclared(rule, [stray]) == [("listen-queue-full", "not declared")]
    warning = dataclasses.replace(stray, code="fd-limit-near", severity=Severity.INFO)
    assert _undeclared(rule, [warning]) == [("fd-limit-near", "severity INFO not declared")]


def _any_finding() -> Finding:
    findings = _check_snapshot(sources.load(FIXTURES / "fd-limit.json"))
    assert findings
    return findings[0]


def test_every_code_is_declared_once_and_literally() -> None:
    names = [code.name for rule in RULES for code in rule.codes]
    assert len(names) == len(set(names))
    # Each code appears as a string literal in the source of the module of its rule, and in
    # no other rule module: no code is built at run time or borrowed from another rule.
    diagnose = REPO / "tcphealth" / "diagnose" / "rules"
    for rule in RULES:
        own = (diagnose / f"{rule.name}.py").read_text(encoding="utf-8")
        for code in rule.codes:
            assert own.count(f'"{code.name}"') == 1, code.name
        for other in RULES:
            if other is not rule:
                text = (diagnose / f"{other.name}.py").read_text(encoding="utf-8")
                assert not any(f'"{code.name}"' in text for code in rule.codes), other.name


def test_findings_are_sorted_by_the_one_order() -> None:
    series = sources.load_series(FIXTURES / "series" / "close-wait-slow-close.json")
    findings, _ = diagnose_series(series)
    assert findings == sorted(findings, key=finding_order)


def _readme_table() -> str:
    section = README.split("## Finding codes\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|")) + "\n"


def test_the_readme_table_is_the_catalogue() -> None:
    assert _readme_table() == catalogue.markdown_table()


def test_explain_codes_lists_every_code_with_its_severities() -> None:
    result = CliRunner().invoke(main, ["explain", "--codes"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == list(CODES)
    slow_close = lines[list(CODES).index("close-wait-slow-close")]
    assert re.match(r"^close-wait-slow-close +INFO-WARNING +a process closes", slow_close)


def test_explain_codes_as_json() -> None:
    result = CliRunner().invoke(main, ["explain", "--codes", "--format", "json"])
    assert result.exit_code == 0
    import json

    records = json.loads(result.output)
    assert [record["code"] for record in records] == list(CODES)
    bucket = next(r for r in records if r["code"] == "time-wait-bucket-limit")
    assert bucket == {
        "code": "time-wait-bucket-limit",
        "rule": "time_wait",
        "severities": ["INFO", "WARNING", "CRITICAL"],
        "from_series": False,
        "meaning": CODES["time-wait-bucket-limit"].meaning,
    }


def test_explain_codes_as_ndjson_is_one_typed_line_per_code() -> None:
    import json

    result = CliRunner().invoke(main, ["explain", "--codes", "--format", "ndjson"])
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["code"] for line in lines] == list(CODES)
    assert {line["type"] for line in lines} == {"code"}


def test_explain_codes_refuses_a_state_and_explain_needs_one() -> None:
    assert CliRunner().invoke(main, ["explain", "--codes", "close-wait"]).exit_code == 3
    assert CliRunner().invoke(main, ["explain"]).exit_code == 3
