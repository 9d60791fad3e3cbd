"""Findings from a snapshot: pure rules, no I/O.

``diagnose(snapshot)`` runs every rule over one pass of indexing and returns the findings most
severe first. Each rule lives in its own module under ``rules/`` (CLOSE_WAIT, listeners,
handshakes, closing, TIME_WAIT, ESTABLISHED, descriptors, and ``over_time`` for what only a
series shows) and declares itself there as a :class:`~tcphealth.diagnose.rule.Rule` record:
its name, a one-line summary, the codes it can emit, its check, its optional step over a
series. :data:`RULES` below is the one list of them; ``tcphealth explain --codes`` and the
README's table of codes are made from it. The rules share helpers only through ``shared``,
``wording`` and ``index``: no rule module imports another (``make lint`` checks it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.rules import (
    bound,
    close_wait,
    closed,
    closing,
    descriptors,
    established,
    handshake,
    keepalive,
    kernel_limits,
    listeners,
    over_time,
    partial,
    peer_loss,
    piled,
    port_collision,
    ports,
    receive_drops,
    reported,
    reuseport,
    syn_queue,
    time_wait,
)
from tcphealth.diagnose.shared import mark_linux_steps, steps_platform
from tcphealth.diagnose.timeline import Age, ConnectionKey
from tcphealth.model import Finding, Snapshot, finding_order

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    from tcphealth.columnar import SocketTable

__all__ = ["AGE_DECIDES", "CODES", "RULES", "diagnose", "finding_order", "rule_of"]

# The one registry of rules. Their checks run in this order over a snapshot, their steps in
# this order over a series (``over_time`` last: it adds evidence to what the others found).
RULES: tuple[Rule, ...] = (
    descriptors.RULE,
    listeners.RULE,
    reuseport.RULE,
    syn_queue.RULE,
    close_wait.RULE,
    port_collision.RULE,
    handshake.RULE,
    closing.RULE,
    peer_loss.RULE,
    time_wait.RULE,
    ports.RULE,
    bound.RULE,
    closed.RULE,
    established.RULE,
    keepalive.RULE,
    piled.RULE,
    kernel_limits.RULE,
    receive_drops.RULE,
    reported.RULE,
    partial.RULE,
    over_time.RULE,
)


def _codes(rules: tuple[Rule, ...]) -> dict[str, Code]:
    codes: dict[str, Code] = {}
    for rule in rules:
        for code in rule.codes:
            if code.name in codes:
                raise ValueError(f"finding code {code.name!r} is declared twice")
            codes[code.name] = code
    return codes


# Every finding code by name, in the registry's order.
CODES: Mapping[str, Code] = _codes(RULES)
_RULE_OF_CODE = {code.name: rule for rule in RULES for code in rule.codes}
# The codes whose findings are about sockets whose age decides (Code.age_decides).
AGE_DECIDES: frozenset[str] = frozenset(name for name, code in CODES.items() if code.age_decides)


def rule_of(code: str) -> Rule | None:
    """The rule that declares ``code``; None for a code no rule declares."""
    return _RULE_OF_CODE.get(code)


def diagnose(
    snapshot: Snapshot,
    thresholds: Thresholds | None = None,
    series_ages: Mapping[ConnectionKey, Age] | None = None,
    *,
    table: SocketTable | None = None,
    lazy: Sequence[int] = (),
) -> list[Finding]:
    """Every finding the rules make about ``snapshot``, most severe first.

    Order: severity (CRITICAL first), then count descending, then code. Healthy sockets give
    no finding. Runs in time linear in the number of sockets. ``series_ages``: the sockets'
    ages where ``snapshot`` is the latest of a series (see SnapshotIndex.series_ages).

    ``table``: every socket of the snapshot as columns, the snapshot itself listing as
    objects only those in states not in ``lazy`` (kernel state codes; see
    SnapshotIndex.build_table): each rule with a table check counts over the columns, the
    others read objects, made from the table for a lazy state when first asked for. The
    same findings as of the whole snapshot (tests/test_lean_pipeline.py).
    """
    if table is None:
        index = SnapshotIndex.build(snapshot)
    else:
        index = SnapshotIndex.build_table(snapshot, table, lazy)
    index.series_ages = series_ages
    effective = thresholds if thresholds is not None else Thresholds()
    findings: list[Finding] = []
    for rule in RULES:
        if table is not None and rule.check_table is not None:
            findings.extend(rule.check_table(index, effective, table))
        elif rule.check is not None:
            findings.extend(rule.check(index, effective))
    platform = steps_platform(snapshot)
    if platform is not None and platform != "linux":
        # A rule without steps of its own for the pasted platform (or for a paste that does
        # not say its platform) still offers ss and /proc: each such step says it is a Linux
        # command.
        findings = [
            replace(finding, next_steps=mark_linux_steps(platform, finding.next_steps))
            for finding in findings
        ]
    findings.sort(key=finding_order)
    return findings
