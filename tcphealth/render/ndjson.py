"""One JSON object per line, each with a ``"type"``: the findings (``"finding"``), then, with
``--sockets`` or in the ``sockets`` command, one line per socket (``"socket"``). The sockets
command prints only the socket lines, as its plain output does."""

from __future__ import annotations

import itertools

from tcphealth.model import CodeEntry
from tcphealth.render.environment import Environment
from tcphealth.render.json import dumps
from tcphealth.render.options import RenderOptions, View
from tcphealth.render.records import (
    code_record,
    explanation_record,
    finding_record,
    socket_record,
    thresholds_record,
)
from tcphealth.report import Report, ThresholdsReport
from tcphealth.states import StateExplanation


def render(report: Report, options: RenderOptions, env: Environment) -> None:
    out = env.stdout
    if options.view is not View.SOCKETS:
        for finding in report.findings:
            out.write(dumps({"type": "finding", **finding_record(finding)}) + "\n")
    if options.with_sockets or options.view is View.SOCKETS:
        for sock in itertools.islice(report.sockets, options.socket_limit(table=False)):
            out.write(dumps({"type": "socket", **socket_record(report, sock)}) + "\n")


def explanation(shown: StateExplanation, env: Environment) -> None:
    """The explanation as one JSON line."""
    env.stdout.write(dumps(explanation_record(shown)) + "\n")


def thresholds(shown: ThresholdsReport, env: Environment) -> None:
    env.stdout.write(dumps(thresholds_record(shown)) + "\n")


def codes(shown: tuple[CodeEntry, ...], env: Environment) -> None:
    """One JSON line per finding code, typed like the report's lines."""
    for entry in shown:
        env.stdout.write(dumps({"type": "code", **code_record(entry)}) + "\n")
