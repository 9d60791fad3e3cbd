"""The one-way flow of a run, callable without the command line:
snapshot (or a series of them) -> filter -> diagnose -> report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from tcphealth import gcpause, namespaced
from tcphealth.diagnose import diagnose
from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.timeline import Age, ConnectionKey
from tcphealth.filters import SocketFilter, apply_filter, filter_findings
from tcphealth.model import Finding, Snapshot
from tcphealth.report import Report, build_report

if TYPE_CHECKING:
    from tcphealth.diagnose.series import SeriesFacts


def analyse(
    snapshot: Snapshot,
    flt: SocketFilter | None = None,
    thresholds: Thresholds | None = None,
) -> Report:
    """Narrow the snapshot to what ``flt`` selects, diagnose that, and arrange the report."""
    flt = flt or SocketFilter()
    with gcpause.paused():  # indexes and groups over every socket: no cycles among them
        narrowed = apply_filter(snapshot, flt)
        if narrowed.namespaces:  # each namespace diagnosed with its own sysctls and counters
            return namespaced.analyse(
                narrowed,
                lambda part: filter_findings(diagnose(part, thresholds), flt, part),
                flt.describe(),
            )
        findings = filter_findings(diagnose(narrowed, thresholds), flt, narrowed)
        return build_report(narrowed, findings, filters=flt.describe())


def analyse_series(
    series: Sequence[Snapshot],
    flt: SocketFilter | None = None,
    thresholds: Thresholds | None = None,
    ages: Mapping[ConnectionKey, Age] | None = None,
) -> Report:
    """Like :func:`analyse` for several samples of one host, oldest first: the report is of
    the latest, with the findings time corrects and adds (see :mod:`tcphealth.diagnose.series`).
    ``ages`` comes from a tracker that followed the host for longer (``watch``)."""
    # Loaded here, not with this module: a one-snapshot run has no use for it.
    from tcphealth.diagnose.series import diagnose_series

    flt = flt or SocketFilter()
    with gcpause.paused():
        narrowed = [apply_filter(snapshot, flt) for snapshot in series]
        if narrowed[-1].namespaces:
            from tcphealth.diagnose.timeline import ages_over

            # Ages over the whole host's samples: a socket's key holds no namespace, but its
            # cookie (or inode) is unique on the host.
            every_age = ages_over(narrowed) if ages is None else ages

            def diagnosis(part: Sequence[Snapshot]) -> tuple[list[Finding], SeriesFacts]:
                found, facts = diagnose_series(part, thresholds, every_age)
                return filter_findings(found, flt, part[-1]), facts

            return namespaced.analyse_series(narrowed, diagnosis, flt.describe())
        findings, facts = diagnose_series(narrowed, thresholds, ages)
        latest = narrowed[-1]
        return build_report(
            latest, filter_findings(findings, flt, latest), filters=flt.describe(), series=facts
        )
