"""Turning host values into safe text: shared by every renderer.

Process names, command lines and (scoped IPv6) addresses come from the host or from a snapshot
file anyone could have written. None of them may restyle a terminal: :func:`inert` shows every
control or invisible character as an escape (``\\x1b``, ``\\n``, ``\\u202e``), so a process
named ``"\\x1b[2J"`` prints as that text instead of clearing the screen.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from tcphealth.model import Endpoint, Finding, Severity, SubjectKind, TcpState
from tcphealth.phrases import plural

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    if char.isprintable() or char == " ":
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def inert(value: str) -> str:
    """``value`` with every non-printable character written as a Python-style escape.

    >>> inert("java")
    'java'
    >>> inert("evil\\x1b[31m")
    'evil\\\\x1b[31m'
    """
    if value.isprintable():  # the common case, checked in C
        return value
    return "".join(_escape_char(char) for char in value)


def endpoint_text(endpoint: Endpoint) -> str:
    """``10.0.0.5:443``, ``[2001:db8::1]:443``; ``*`` for a port left out (grouped, unknown)."""
    return inert(str(endpoint))


def _utc(epoch: float) -> datetime.datetime | None:
    # A snapshot file may carry any number as its time; years past 9999 have no date.
    try:
        return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def utc_text(epoch: float) -> str:
    """``2024-05-01 12:00:00 UTC``: always UTC, so output does not depend on the machine;
    ``time unknown`` for a time no calendar date has."""
    moment = _utc(epoch)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "time unknown"


def utc_iso(epoch: float) -> str | None:
    """``2024-05-01T12:00:00Z``; None for a time no calendar date has."""
    moment = _utc(epoch)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def severity_counts(counts: Mapping[Severity, int], *, zeros: bool = True) -> str:
    """``1 critical, 0 warning, 2 info``, most severe first, as ``check`` and ``watch`` end
    their run on stderr; ``zeros=False`` leaves out a severity no finding has (Nagios)."""
    return ", ".join(
        f"{counts.get(severity, 0)} {severity.label.lower()}"
        for severity in sorted(Severity, reverse=True)
        if severity is not Severity.OK and (zeros or counts.get(severity, 0))
    )


def age_text(seconds: float) -> str:
    """``4.2s``, ``3m05s``, ``2h03m``, ``3d04h``: short enough for a table column.

    >>> [age_text(x) for x in (4.24, 65, 7380, 273600)]
    ['4.2s', '1m05s', '2h03m', '3d04h']
    """
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def count_text(finding: Finding, with_state: bool = True) -> str:
    """What a finding's count counts, in words: for a finding about a listener's queue, the
    connections queued (the title names the listener), not "sockets in LISTEN"; else its
    sockets in their state (without it when ``with_state`` is false: a verdict line, where
    the code says as much); empty for a host-wide finding whose count is not of sockets (0)."""
    subject = finding.subject
    if not finding.count and subject.kind is SubjectKind.HOST:
        return ""  # a host-wide limit counted in pages, entries or SYNs: see its evidence
    if subject.kind is SubjectKind.LISTENER and finding.state is TcpState.LISTEN:
        return f"{plural(finding.count, 'connection')} queued"
    count = plural(finding.count, "socket")
    return count + (f" in {finding.state.value}" if finding.state and with_state else "")
