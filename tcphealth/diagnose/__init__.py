"""Placeholder for the diagnosis so the CLI runs on this branch."""

# TEMPORARY until branch diagnose is merged

from __future__ import annotations

from tcphealth.diagnose.config import Thresholds
from tcphealth.model import Finding, Snapshot


def diagnose(snapshot: Snapshot, thresholds: Thresholds | None = None) -> list[Finding]:
    return []
