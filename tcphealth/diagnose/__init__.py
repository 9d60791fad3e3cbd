"""Findings from a snapshot: pure rules, no I/O.

``diagnose(snapshot)`` runs every rule over one pass of indexing and returns the findings most
severe first. Each rule module handles one concern:

=================  ==========================================================================
``close_wait``     CLOSE_WAIT held by a process, never accepted, or held by an unknown owner
``listeners``      accept queues at or near their backlog
``handshake``      SYN_RECV without final ACKs; SYN_SENT that gets no answer
``closing``        FIN_WAIT1 / CLOSING / LAST_ACK not acknowledged; FIN_WAIT2 that never ends
``time_wait``      TIME_WAIT exhausting ephemeral ports or hitting tcp_max_tw_buckets
``established``    stalled sends, unread receive queues, zero windows
``descriptors``    processes near their file-descriptor limit
=================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable

from tcphealth.diagnose import (
    close_wait,
    closing,
    descriptors,
    established,
    handshake,
    listeners,
    time_wait,
)
from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.model import Finding, Snapshot

__all__ = ["diagnose", "finding_order"]

Rule = Callable[[SnapshotIndex, Thresholds], list[Finding]]

RULES: tuple[Rule, ...] = (
    descriptors.check,
    listeners.check,
    close_wait.check,
    handshake.check,
    closing.check,
    time_wait.check,
    established.check,
)


def finding_order(finding: Finding) -> tuple[int, int, str, str]:
    # Most severe first, then the largest, then by code; the subject breaks the last ties so
    # that the same snapshot always gives the same list.
    return (-finding.severity, -finding.count, finding.code, finding.subject.describe())


def diagnose(snapshot: Snapshot, thresholds: Thresholds | None = None) -> list[Finding]:
    """Every finding the rules make about ``snapshot``, most severe first.

    Order: severity (CRITICAL first), then count descending, then code. Healthy sockets give
    no finding. Runs in time linear in the number of sockets.
    """
    index = SnapshotIndex.build(snapshot)
    effective = thresholds if thresholds is not None else Thresholds()
    findings: list[Finding] = []
    for rule in RULES:
        findings.extend(rule(index, effective))
    findings.sort(key=finding_order)
    return findings
