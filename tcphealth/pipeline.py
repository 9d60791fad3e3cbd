"""The one-way flow of a run, callable without the command line:
snapshot -> filter -> diagnose -> report."""

from __future__ import annotations

from tcphealth import gcpause
from tcphealth.diagnose import diagnose
from tcphealth.diagnose.config import Thresholds
from tcphealth.filters import SocketFilter, apply_filter, filter_findings
from tcphealth.model import Snapshot
from tcphealth.report import Report, build_report


def analyse(
    snapshot: Snapshot,
    flt: SocketFilter | None = None,
    thresholds: Thresholds | None = None,
) -> Report:
    """Narrow the snapshot to what ``flt`` selects, diagnose that, and arrange the report."""
    flt = flt or SocketFilter()
    with gcpause.paused():  # indexes and groups over every socket: no cycles among them
        narrowed = apply_filter(snapshot, flt)
        findings = filter_findings(diagnose(narrowed, thresholds), flt, narrowed)
        return build_report(narrowed, findings, filters=flt.describe())
