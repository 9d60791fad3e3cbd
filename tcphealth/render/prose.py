"""What ``explain`` and ``config`` print for a person (the table and plain formats): the
explanation as wrapped prose, the thresholds as the TOML file tcphealth reads back, the
catalogue of finding codes one line per code."""

from __future__ import annotations

from tcphealth.model import CodeEntry
from tcphealth.render.environment import Environment
from tcphealth.report import ThresholdsReport
from tcphealth.states import StateExplanation, format_explanation

# Prose sent to a pipe or a file is wrapped at this width; on a terminal, at the terminal's.
PIPE_TEXT_WIDTH = 88


def explanation(shown: StateExplanation, env: Environment) -> None:
    width = env.width if env.stdout_isatty else PIPE_TEXT_WIDTH
    env.stdout.write(format_explanation(shown, width=width))


def thresholds(shown: ThresholdsReport, env: Environment) -> None:
    if shown.origin:
        where = f"from {shown.origin}"
    else:
        where = f"defaults (no {' or '.join(str(path) for path in shown.searched)})"
    env.stdout.write(f"# tcphealth thresholds: {where}\n")
    env.stdout.write(shown.toml)


def codes(shown: tuple[CodeEntry, ...], env: Environment) -> None:
    """One line per code: code, severity range, its meaning, then the rule (and whether only a
    series shows it); aligned for a terminal, one line each so ``grep`` finds a code."""
    code_width = max(len(entry.code) for entry in shown)
    severity_width = max(len(entry.severity_text) for entry in shown)
    for entry in shown:
        series = " (series)" if entry.from_series else ""
        env.stdout.write(
            f"{entry.code:<{code_width}}  {entry.severity_text:<{severity_width}}  "
            f"{entry.meaning} [{entry.rule}{series}]\n"
        )
