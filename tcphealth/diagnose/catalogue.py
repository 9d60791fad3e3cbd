"""The catalogue of finding codes, made from the rules' declarations: what
``tcphealth explain --codes`` prints (text or a JSON record) and the README's table of codes.

Codes are the stable interface users grep and CI keys on; listing them from the declarations
means the catalogue cannot miss one a rule can emit (a test checks every code emitted against
its rule's declaration, and the README's table against :func:`markdown_table`).
"""

from __future__ import annotations

from dataclasses import dataclass

from tcphealth.diagnose import RULES
from tcphealth.model import Severity


@dataclass(frozen=True)
class Entry:
    code: str
    rule: str
    severities: tuple[Severity, ...]
    from_series: bool
    meaning: str

    @property
    def severity_text(self) -> str:
        """``WARNING-CRITICAL``, ``INFO``: the range, lowest to highest."""
        low, high = min(self.severities), max(self.severities)
        return low.label if low == high else f"{low.label}-{high.label}"


def entries() -> tuple[Entry, ...]:
    """Every declared code, in the rules' order and each rule's own order."""
    return tuple(
        Entry(code.name, rule.name, code.severities, code.from_series, code.meaning)
        for rule in RULES
        for code in rule.codes
    )


def text() -> str:
    """One line per code: code, severity range, the rule, whether only a series shows it, and
    its meaning; aligned for a terminal, one line each so ``grep`` finds a code."""
    rows = entries()
    code_width = max(len(entry.code) for entry in rows)
    severity_width = max(len(entry.severity_text) for entry in rows)
    lines = []
    for entry in rows:
        series = " (series)" if entry.from_series else ""
        lines.append(
            f"{entry.code:<{code_width}}  {entry.severity_text:<{severity_width}}  "
            f"{entry.meaning} [{entry.rule}{series}]"
        )
    return "\n".join(lines) + "\n"


def record() -> list[dict[str, object]]:
    """The catalogue as JSON-ready records, one per code."""
    return [
        {
            "code": entry.code,
            "rule": entry.rule,
            "severities": [severity.label for severity in entry.severities],
            "from_series": entry.from_series,
            "meaning": entry.meaning,
        }
        for entry in entries()
    ]


def markdown_table() -> str:
    """The README's table of codes."""
    lines = ["| Code | Severity | Rule | Meaning |", "|---|---|---|---|"]
    for entry in entries():
        rule = f"{entry.rule} (series)" if entry.from_series else entry.rule
        lines.append(f"| `{entry.code}` | {entry.severity_text} | {rule} | {entry.meaning} |")
    return "\n".join(lines) + "\n"
