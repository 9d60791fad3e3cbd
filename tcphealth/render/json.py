"""One JSON document per run: ``{"format": "tcphealth.report", "version": 1, ...}``.

The sockets (``--sockets``, or the ``sockets`` command) are written one array item at a time,
so 300,000 sockets never sit in memory as one string. The rest of the document is small.
"""

from __future__ import annotations

import itertools
import json

from tcphealth.model import CodeEntry
from tcphealth.render.environment import Environment
from tcphealth.render.options import RenderOptions, View
from tcphealth.render.records import (
    code_record,
    explanation_record,
    report_record,
    socket_record,
    thresholds_record,
)
from tcphealth.report import Report, ThresholdsReport
from tcphealth.states import StateExplanation


def dumps(value: object, indent: int | None = None) -> str:
    # ensure_ascii: a process name with a C1 control or a bidi override stays an escape,
    # harmless if the document lands on a terminal.
    return json.dumps(value, indent=indent, ensure_ascii=True)


def render(report: Report, options: RenderOptions, env: Environment) -> None:
    document = dumps(report_record(report), indent=2)
    out = env.stdout
    if not (options.with_sockets or options.view is View.SOCKETS):
        out.write(document + "\n")
        return
    assert document.endswith("}")
    out.write(document[:-1].rstrip() + ',\n  "sockets": [')
    limit = options.socket_limit(table=False)
    separator = "\n    "
    for sock in itertools.islice(report.sockets, limit):
        out.write(separator + dumps(socket_record(report, sock)))
        separator = ",\n    "
    out.write("]\n}\n" if separator == "\n    " else "\n  ]\n}\n")


def explanation(shown: StateExplanation, env: Environment) -> None:
    env.stdout.write(dumps(explanation_record(shown), indent=2) + "\n")


def thresholds(shown: ThresholdsReport, env: Environment) -> None:
    env.stdout.write(dumps(thresholds_record(shown), indent=2) + "\n")


def codes(shown: tuple[CodeEntry, ...], env: Environment) -> None:
    """The catalogue of finding codes as one JSON array."""
    env.stdout.write(dumps([code_record(entry) for entry in shown], indent=2) + "\n")
