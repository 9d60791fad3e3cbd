"""Sockets bound to a local port that neither listen nor connect, piled up by one process.

A socket that was bound (by bind(), or by a connect() that then failed) keeps its local port
until it is closed, in no TCP state at all: Linux's BOUND_INACTIVE, Windows' ``Bound``. One or
two are a server between bind() and listen(). Thousands held by one process are sockets it
never closed after a failed connect, and each keeps a port out of the range connect() picks
from: when the process holds about as many as that range has, new outgoing connections on the
host fail for want of a port (Windows: WSAENOBUFS / "An operation on a socket could not be
performed because the system lacked sufficient buffer space"; Linux: EADDRNOTAVAIL).

The counts come from the sockets listed or, where the paste only counted them (PowerShell's
``Group-Object State, OwningProcess``), from its counts per owner. The port range is the
host's where the paste shows it, else the platform's default, said as an assumption.
"""

from __future__ import annotations

from collections import Counter

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.wording import level, number, percent, process_subject, who
from tcphealth.model import Blame, Evidence, Finding, Severity, TcpState
from tcphealth.states import port_range_or_default

BOUND_PORTS_HELD = "bound-ports-held"

# Windows' dynamic port range since Vista / Server 2008 (netsh int ipv4 show dynamicport tcp).
WINDOWS_DYNAMIC_RANGE = (49152, 65535)


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    bound = index.sockets(TcpState.BOUND_INACTIVE)
    reported = [c for c in index.snapshot.reported if c.state is TcpState.BOUND_INACTIVE]
    if not bound and not reported:
        return []
    (low, high), assumed, where = _port_range(index)
    held: Counter[int] = Counter()
    for sock in bound:
        port = sock.local.port
        # A port bound outside the range (a server's own) takes nothing from connect().
        if len(sock.pids) == 1 and (port is None or low <= port <= high):
            held[sock.pids[0]] += 1
    listed = dict(held)
    counted: dict[int, str] = {}
    for item in reported:
        if len(item.pids) == 1 and item.sockets > held[item.pids[0]]:
            held[item.pids[0]] = item.sockets
            counted[item.pids[0]] = item.command
    ports = high - low + 1
    if ports <= 0:
        return []  # an empty range (low above high): no port to pick, so no share of it held
    findings = []
    for pid, count in held.most_common():
        ratio = count / ports
        severity = level(ratio, thresholds.ports_warning_ratio, thresholds.ports_critical_ratio)
        if severity is None:
            continue
        findings.append(
            _finding(
                index,
                pid,
                count,
                listed.get(pid, 0),
                counted.get(pid),
                ratio,
                severity,
                (low, high),
                assumed,
                where,
            )
        )
    return findings


def _port_range(index: SnapshotIndex) -> tuple[tuple[int, int], bool, str]:
    """The range connect() picks ports from, whether it was assumed, and whose it is."""
    windows = index.snapshot.host.platform == "windows"
    if windows and index.snapshot.sysctls.ip_local_port_range is None:
        return WINDOWS_DYNAMIC_RANGE, True, "Windows' default dynamic port range"
    port_range, assumed = port_range_or_default(index.snapshot.sysctls)
    return (
        port_range,
        assumed,
        "Linux's default ip_local_port_range" if assumed else ("the host's ip_local_port_range"),
    )


def _finding(
    index: SnapshotIndex,
    pid: int,
    count: int,
    listed: int,
    counted_by: str | None,
    ratio: float,
    severity: Severity,
    port_range: tuple[int, int],
    assumed: bool,
    where: str,
) -> Finding:
    low, high = port_range
    holder = who(index, (pid,))
    range_text = f"{where}, {low}-{high}" + (
        " (assumed: the input does not show it)" if assumed else ""
    )
    source = (
        f"; the paste counted them with `{counted_by}` and did not list them"
        if counted_by is not None
        else ""
    )
    windows = index.snapshot.host.platform == "windows"
    if windows:
        steps: tuple[str, ...] = (
            f"Get-NetTCPConnection -State Bound -OwningProcess {pid} | Measure-Object",
            "netsh int ipv4 show dynamicport tcp   # the range connect() picks ports from",
        )
    else:
        steps = (
            f"ss -tanp | grep 'pid={pid},' | awk '{{print $1}}' | sort | uniq -c   # per state",
            "cat /proc/sys/net/ipv4/ip_local_port_range",
        )
    evidence = [
        Evidence("bound", count, "sockets bound to a local port, neither listening nor connected"),
        Evidence("ephemeral_ports", high - low + 1, range_text),
        Evidence("share_of_range", round(ratio, 3), "bound sockets / ports in the range"),
    ]
    if counted_by is not None:
        evidence.append(Evidence("listed", listed, "of them listed as rows in the input"))
    unchecked: tuple[str, ...] = ()
    if assumed:
        shows = (
            "netsh int ipv4 show dynamicport tcp"
            if windows
            else "sysctl net.ipv4.ip_local_port_range"
        )
        unchecked = (f"the host's port range: {shows} shows it",)
    return Finding(
        code=BOUND_PORTS_HELD,
        severity=severity,
        state=None,  # no TCP state: the sockets never got as far as one
        blame=Blame.LOCAL_APPLICATION,
        subject=process_subject(index, (pid,)),
        count=count,
        summary=(
            f"{holder} holds {number(count)} sockets bound to a local port that neither listen "
            f"nor connect ({percent(ratio)} of the {number(high - low + 1)} ports of {where}"
            f"{source}): sockets it does not close after a failed or abandoned connect, each "
            "keeping a port, so new outgoing connections on this host fail for want of one."
        ),
        evidence=tuple(evidence),
        next_steps=(
            *steps,
            "Find where the process creates sockets it never closes (a connect that fails or "
            "times out and whose socket is dropped without close()); restarting it frees the "
            "ports but the count will climb again",
        ),
        unchecked=unchecked,
    )


RULE = Rule(
    name="bound",
    summary="processes holding many sockets bound to a port without a connection",
    codes=(
        Code(
            BOUND_PORTS_HELD,
            "a process holds bound, unconnected sockets that use up the ephemeral ports",
            (Severity.WARNING, Severity.CRITICAL),
        ),
    ),
    check=check,
)
