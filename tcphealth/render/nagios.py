"""The one status line of a Nagios/Icinga plugin, for ``tcphealth check --nagios``::

    TCPHEALTH CRITICAL - 2 critical: listen-queue-full: On 0.0.0.0:8000, ... | established=91;;; ...

The status word follows the exit code (so ``--fail-on`` applies); the perfdata after ``|``
has one ``state=count;;;`` item for each of the eleven TCP states, always in the same order.
"""

from __future__ import annotations

from tcphealth.model import TCP_STATES, Severity
from tcphealth.phrases import plural
from tcphealth.render.text import inert, severity_counts
from tcphealth.report import ExitCode, Report

PLUGIN = "TCPHEALTH"
STATUS_WORDS = {
    ExitCode.OK: "OK",
    ExitCode.WARNING: "WARNING",
    ExitCode.CRITICAL: "CRITICAL",
    ExitCode.INPUT_UNREADABLE: "UNKNOWN",
}


def _clean(text: str) -> str:
    """'|' starts perfdata and a newline starts long output: neither may appear in the text."""
    return inert(" ".join(text.split())).replace("|", "/")


def perfdata(report: Report) -> str:
    return " ".join(f"{s.value.lower()}={report.states.get(s, 0)};;;" for s in TCP_STATES)


def status_line(report: Report, fail_on: Severity = Severity.WARNING) -> str:
    code = report.exit_code(fail_on)
    if report.findings:
        counts = severity_counts(report.count_by_severity(), zeros=False)
        worst = report.findings[0]
        # The summary names its subject already ("pid 812 (java) holds ...").
        text = f"{counts}: {worst.code}: {worst.summary}"
        if code is ExitCode.OK:
            text += f" (below --fail-on {fail_on.label.lower()})"
    else:
        text = f"no findings in {plural(report.socket_count, 'socket')}"
    return f"{PLUGIN} {STATUS_WORDS[code]} - {_clean(text)} | {perfdata(report)}"


def unknown_line(problem: str) -> str:
    return f"{PLUGIN} {STATUS_WORDS[ExitCode.INPUT_UNREADABLE]} - {_clean(problem)}"
