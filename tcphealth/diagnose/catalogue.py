"""The catalogue of finding codes, made from the rules' declarations: the entries
``tcphealth explain --codes`` prints (through the render registry, like every output) and the
README's table of codes.

Codes are the stable interface users grep and CI keys on; listing them from the declarations
means the catalogue cannot miss one a rule can emit (a test checks every code emitted against
its rule's declaration, and the README's table against :func:`markdown_table`).
"""

from __future__ import annotations

from tcphealth.diagnose import RULES
from tcphealth.model import CodeEntry


def entries() -> tuple[CodeEntry, ...]:
    """Every declared code, in the rules' order and each rule's own order."""
    return tuple(
        CodeEntry(code.name, rule.name, code.severities, code.from_series, code.meaning)
        for rule in RULES
        for code in rule.codes
    )


def markdown_table() -> str:
    """The README's table of codes."""
    lines = ["| Code | Severity | Rule | Meaning |", "|---|---|---|---|"]
    for entry in entries():
        rule = f"{entry.rule} (series)" if entry.from_series else entry.rule
        lines.append(f"| `{entry.code}` | {entry.severity_text} | {rule} | {entry.meaning} |")
    return "\n".join(lines) + "\n"
