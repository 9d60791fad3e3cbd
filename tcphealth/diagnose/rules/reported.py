"""Counts a pasted transcript printed itself: ``ss -ant state close-wait | wc -l`` -> 634.

In an incident thread the number is often all there is -- or the six rows shown beside it are a
sample of the 26,358 it counts. The other rules judge the sockets listed; this one judges what
the paste counted but did not list, under the same thresholds where the count is about what
those thresholds are about, and says every time that the number is the paste's own.

What a count can be held to depends on what its command selected (see
:class:`tcphealth.model.ReportedCount`):

* CLOSE_WAIT's thresholds are per process. A count selected by a pid, a program or a port is
  about one holder; a count of every CLOSE_WAIT on the host is not, so alone it warns at most
  -- unless the paste shows it growing from count to count (a watch loop), which is a leak
  whoever holds them, or the kernel's log pasted beside it says the host ran out of room for
  the sockets such a pile turns into (orphans, TCP memory): the harm is then shown, and this
  pile, the cause, is as critical as the limit hit that follows from it.
* FIN_WAIT2 counted for one program is held open by it (no timer ends a FIN_WAIT2 whose
  descriptor is still open), so the held thresholds apply; a host-wide count is judged as
  orphans. Who is to blame is the story the closing rule tells of held rows: a holder the paste
  also shows keeping CLOSE_WAIT (counted under the same selection, or listed) passes one peer's
  close on as a half-close and closes neither side -- its own doing; otherwise the wait is on
  peers that do not send their FIN.
* TIME_WAIT is each a connection this host closed first. Many mean connections are not reused;
  near the ephemeral port range they may exhaust the ports toward one destination (the count
  is host-wide, so that is said as the worst case).

* ESTABLISHED counted toward one destination -- a selection that names the peer (``netstat |
  grep registry | grep ESTABLISHED | wc -l``), or a host-wide count beside a listing whose
  every row goes to one address and port -- is the piled rule's reading from a number: one
  client holding that many connections open to one server is not reusing them. Where the
  destination is only inferred from the rows shown, the finding says it is an assumption;
  where nothing points at one destination (a server's count of its clients looks the same),
  nothing is said. Whether they are idle or busy a count cannot tell.
* Any count of one selection (in one state, or a listing's rows in every state) that the
  paste printed two or more times, rising at every step by ``counted_growth_warning`` in
  all, is a build-up toward that selection: connections opened faster than they end. Not
  TIME_WAIT (a timer ends each; a rise is more traffic) nor LISTEN.

Only a count larger than the sockets listed in that state is judged here: when the listing
holds them all, the rules that see the sockets speak.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex, destination
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.shared import (
    PILE_IDLE_UNKNOWN,
    PILE_MEANING,
    PORTS_RAN_OUT,
    count_holders,
    count_platform,
    error_evidence,
    error_line,
    established_piles,
    log_evidence,
    logged,
    paste_count_evidence,
    pile_candidate,
    pile_steps,
    platform_steps,
    ports_ran_out,
    widest_counts,
)
from tcphealth.diagnose.wording import level, number, percent, pids_key, process_subject, who
from tcphealth.model import (
    Blame,
    Endpoint,
    ErrorKind,
    Evidence,
    Finding,
    KernelEvent,
    ReportedCount,
    Severity,
    Subject,
    SubjectKind,
    TcpState,
)
from tcphealth.states import port_range_or_default

CLOSE_WAIT_COUNTED = "close-wait-counted"
_CLOSE_WAIT_FIX = (
    "Find where the application reads to end-of-file or errors without closing "
    "(a thread dump of the holder shows the handlers that stopped)."
)
_TIME_WAIT_FIX = "Make the client keep its connections open and reuse them."
FIN_WAIT2_COUNTED = "fin-wait2-counted"
TIME_WAIT_COUNTED = "time-wait-counted"
ESTABLISHED_COUNTED = "established-counted"
COUNT_GROWING = "count-growing"
# States whose count rising says nothing is held: a timer ends each TIME_WAIT, so more of them
# is more traffic; more listeners are more services.
_NOT_HELD = frozenset({TcpState.TIME_WAIT, TcpState.LISTEN})


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    findings: list[Finding] = []
    judged: list[ReportedCount] = []
    for count in widest_counts(index.snapshot.reported).values():
        if count.state is None or count.sockets <= len(index.sockets(count.state)):
            continue
        found: Finding | None = None
        if count.state is TcpState.CLOSE_WAIT:
            found = _close_wait(index, count, thresholds)
        elif count.state is TcpState.FIN_WAIT2:
            found = _fin_wait2(index, count, thresholds)
        elif count.state is TcpState.TIME_WAIT:
            found = _time_wait(index, count, thresholds)
        elif count.state is TcpState.ESTABLISHED:
            found = _established(index, count, thresholds)
        if found is not None:
            findings.append(found)
            judged.append(count)
    for count in index.snapshot.reported:
        if not any(count is other for other in judged):
            found = _grown(index, count, thresholds)
            if found is not None:
                findings.append(found)
    return findings


def _growing(count: ReportedCount) -> bool:
    values = (*count.earlier, count.count)
    return (
        len(values) >= 3
        and all(a <= b for a, b in itertools.pairwise(values))
        and values[-1] > values[0]
    )


def _subject(index: SnapshotIndex, pids: tuple[int, ...]) -> Subject:
    if pids:
        return process_subject(index, pids)
    return Subject(kind=SubjectKind.HOST)


# What the kernel's line says the host ran out of, beside a CLOSE_WAIT pile.
_RAN_OUT = {
    KernelEvent.ORPHANS: (
        "the orphan limit was hit at the time: the sockets such a pile becomes once closed"
    ),
    KernelEvent.TCP_MEMORY: "TCP ran out of memory at the time, which such a pile holds",
    KernelEvent.SOCKET_MEMORY: (
        "the host ran out of socket memory or of room for orphans at the time"
    ),
}


def _close_wait(
    index: SnapshotIndex, count: ReportedCount, thresholds: Thresholds
) -> Finding | None:
    severity = level(count.sockets, thresholds.close_wait_warning, thresholds.close_wait_critical)
    if severity is None:
        return None
    pids = count_holders(index, count)
    one_holder = bool(pids) or count.selects is not None
    growing = _growing(count)
    unchecked: list[str] = []
    # The kernel logged running out of what a closed pile turns into: the harm is shown.
    ran_out = logged(index, KernelEvent.ORPHANS, KernelEvent.SOCKET_MEMORY, KernelEvent.TCP_MEMORY)
    if not one_holder and not growing and severity is Severity.CRITICAL and not ran_out:
        severity = Severity.WARNING
        unchecked.append(
            "which process holds them: the count covers every CLOSE_WAIT on the host, and the "
            "critical level is for one process's; count them per process (ss -tanp state "
            "close-wait) to know"
        )
    if pids:
        holder = who(index, pids)
    elif count.selects is not None:
        holder = f"what `{count.selects}` selects"
    else:
        holder = "something on this host"
    trend = " and the count grows from sample to sample" if growing else ""
    evidence = paste_count_evidence(count)
    harm = ""
    if ran_out and severity is Severity.CRITICAL:
        evidence.extend(log_evidence(ran_out[0], "a limit this pile feeds was hit"))
        harm = "; the kernel's log beside the count says " + _RAN_OUT[ran_out[0].event]
        if not one_holder:
            unchecked.append(
                "which process holds them: the count covers every CLOSE_WAIT on the host; "
                "count them per process (ss -tanp state close-wait) to know"
            )
    listed = index.sockets(TcpState.CLOSE_WAIT)
    if listed and pids and not count.pids:
        evidence.append(
            Evidence(
                "listed", len(listed), "the rows the paste shows in this state, all this holder's"
            )
        )
    return Finding(
        code=CLOSE_WAIT_COUNTED,
        severity=severity,
        state=TcpState.CLOSE_WAIT,
        blame=Blame.LOCAL_APPLICATION,
        subject=_subject(index, pids),
        count=count.sockets,
        summary=(
            f"The paste counts {number(count.sockets)} connections in CLOSE_WAIT{trend}: their "
            f"peers closed and {holder} has not called close() on them -- at this many, a leak "
            f"or a stuck handler in the application, not a network problem{harm}."
        ),
        evidence=tuple(evidence),
        next_steps=platform_steps(
            count_platform(index.snapshot, count),
            (
                "ss -tanp state close-wait | awk '{print $NF}' | sort | uniq -c | sort -rn | head",
                _CLOSE_WAIT_FIX,
            ),
            bsd=(
                "lsof -nP -iTCP -sTCP:CLOSE_WAIT | awk 'NR > 1 {print $1, $2}' | sort | uniq -c "
                "| sort -rn | head   # per process (macOS; lsof is a port on BSD)",
                "sockstat -46s -P tcp | grep CLOSE_WAIT | awk '{print $2, $3}' | sort | uniq -c "
                "| sort -rn | head   # per process (FreeBSD)",
                _CLOSE_WAIT_FIX,
            ),
            windows=(
                "Get-NetTCPConnection -State CloseWait | Group-Object OwningProcess | "
                "Sort-Object Count -Descending | Select-Object -First 10 Count, Name",
                "netstat -ano | findstr CLOSE_WAIT   # the last column is the pid",
                _CLOSE_WAIT_FIX,
            ),
        ),
        unchecked=(
            *unchecked,
            "the sockets themselves: the paste printed a count, not the rows, so queues, "
            "peers and ages are not known",
        ),
    )


def _fin_wait2(
    index: SnapshotIndex, count: ReportedCount, thresholds: Thresholds
) -> Finding | None:
    pids = count_holders(index, count)
    held = bool(pids) or count.selects is not None
    evidence = paste_count_evidence(count)
    if held:
        severity = level(
            count.sockets, thresholds.fin_wait2_held_warning, thresholds.fin_wait2_held_critical
        )
        holder = who(index, pids) if pids else f"what `{count.selects}` selects"
        relayed = _close_waits_of_same_holder(index, count, pids)
        evidence.append(
            Evidence(
                "close_wait_same_holder",
                relayed,
                "CLOSE_WAIT the paste counts or lists for the same holder: "
                + (
                    "it passes a peer's close on as a half-close and closes neither side"
                    if relayed
                    else "none, so the wait is on the peers' FIN"
                ),
            )
        )
        if relayed:
            summary = (
                f"The paste counts {number(count.sockets)} connections in FIN_WAIT2 for "
                f"{holder}, and {number(relayed)} in CLOSE_WAIT for the same: it passes one "
                "peer's close on to the other as a half-close and closes neither socket, and "
                "no timer ends a FIN_WAIT2 that is still open -- the application must close "
                "both sides."
            )
            blame = Blame.LOCAL_APPLICATION
        else:
            summary = (
                f"The paste counts {number(count.sockets)} connections in FIN_WAIT2 for "
                f"{holder}: it shut down its side and keeps the descriptors while its peers "
                "have not sent their FIN; no timer ends a FIN_WAIT2 that is still open, so "
                "give the application a timeout after shutdown()."
            )
            blame = Blame.REMOTE_PEER
    else:
        severity = level(count.sockets, thresholds.fin_wait2_orphan_warning, float("inf"))
        holder = ""
        summary = (
            f"The paste counts {number(count.sockets)} connections in FIN_WAIT2 host-wide: "
            "their peers have not sent their FIN yet, and a count does not say for how long. "
            "Orphaned ones end after tcp_fin_timeout; ones a process still holds do not."
        )
        blame = Blame.REMOTE_PEER
    if severity is None:
        return None
    return Finding(
        code=FIN_WAIT2_COUNTED,
        severity=severity,
        state=TcpState.FIN_WAIT2,
        blame=blame,
        subject=_subject(index, pids),
        count=count.sockets,
        summary=summary,
        evidence=tuple(evidence),
        next_steps=(
            "ss -tanpo state fin-wait-2 | head   # a holder and no timer: held open",
            "sysctl net.ipv4.tcp_fin_timeout",
        ),
        unchecked=(
            "the sockets themselves: the paste printed a count, not the rows, so whether each "
            "is held by a descriptor or orphaned is not known",
        ),
    )


def _close_waits_of_same_holder(
    index: SnapshotIndex, count: ReportedCount, pids: tuple[int, ...]
) -> int:
    """CLOSE_WAIT the paste counts under the same selection as ``count``, or lists for
    ``pids``: the larger."""
    counted = max(
        (
            other.sockets
            for other in index.snapshot.reported
            if other.state is TcpState.CLOSE_WAIT
            and (other.selects, other.pids) == (count.selects, count.pids)
        ),
        default=0,
    )
    listed = (
        sum(1 for sock in index.sockets(TcpState.CLOSE_WAIT) if set(sock.pids) & set(pids))
        if pids
        else 0
    )
    return max(counted, listed)


def _time_wait(
    index: SnapshotIndex, count: ReportedCount, thresholds: Thresholds
) -> Finding | None:
    sysctls = index.snapshot.sysctls
    (low, high), assumed = port_range_or_default(sysctls)
    ports = high - low + 1
    ratio = count.sockets / ports if ports > 0 else 0.0
    severity = level(
        ratio, thresholds.time_wait_ports_warning_ratio, thresholds.time_wait_ports_critical_ratio
    )
    if severity is None and count.sockets >= thresholds.time_wait_counted_warning:
        severity = Severity.WARNING
    if severity is None:
        return None
    # The ratios measure TIME_WAIT toward one destination against the ports it can use. A count
    # above the whole range cannot be toward one (one local address has the range toward each
    # destination), so it is spread over several, and how full any one of them is the count
    # does not say: a build-up to warn of, not ports shown to run out (an error line can).
    spread = count.sockets > ports > 0
    if spread:
        severity = min(severity, Severity.WARNING)
    severity, ran_out = ports_ran_out(index, severity)
    evidence = paste_count_evidence(count)
    if ran_out is not None:
        evidence.append(ran_out)
    evidence.append(
        Evidence(
            "ip_local_port_range",
            f"{low}-{high}",
            ("the Linux default, assumed" if assumed else "as the paste gives it")
            + f": {number(ports)} ephemeral ports",
        )
    )
    return Finding(
        code=TIME_WAIT_COUNTED,
        severity=severity,
        state=TcpState.TIME_WAIT,
        blame=Blame.LOCAL_APPLICATION,
        subject=Subject(kind=SubjectKind.HOST),
        count=count.sockets,
        summary=(
            f"The paste counts {number(count.sockets)} connections in TIME_WAIT, "
            f"{percent(ratio)} of the {number(ports)} ephemeral ports: each is a connection "
            "this host closed first, so connections are opened and closed per request instead "
            f"of reused. {_toward_one(count.sockets, ports)}, connects there fail with "
            "EADDRNOTAVAIL once the range is used up -- reuse connections (keep-alive, a pool)"
            + (PORTS_RAN_OUT if ran_out is not None else "")
            + "."
            + (
                " How near any one destination is to that, a host-wide count cannot show, "
                "so this warns of the build-up rather than of ports run out."
                if spread and ran_out is None
                else ""
            )
        ),
        evidence=tuple(evidence),
        next_steps=platform_steps(
            count_platform(index.snapshot, count),
            (
                "ss -tan state time-wait | awk '{print $4}' | sort | uniq -c | sort -rn | head",
                _TIME_WAIT_FIX,
            ),
            bsd=(
                "netstat -an -p tcp | awk '$6 == \"TIME_WAIT\" {print $5}' | sort | uniq -c "
                "| sort -rn | head   # by peer",
                "sysctl net.inet.tcp.msl   # TIME_WAIT lasts twice this (milliseconds)",
                _TIME_WAIT_FIX,
            ),
            windows=(
                "Get-NetTCPConnection -State TimeWait | Group-Object RemoteAddress, RemotePort | "
                "Sort-Object Count -Descending | Select-Object -First 10 Count, Name",
                "netsh int ipv4 show dynamicport tcp   # the ephemeral port range",
                _TIME_WAIT_FIX,
            ),
        ),
        unchecked=(
            "toward whom: the paste counts TIME_WAIT host-wide, so the share of the port "
            + (
                "range used toward any one destination is at most this"
                if count.sockets <= ports
                else "range used toward any one destination is not known, and may be all of it"
            ),
        ),
    )


def _toward_one(sockets: int, ports: int) -> str:
    """Where a host-wide TIME_WAIT count would exhaust the ports: toward one destination, if
    it can all be one's; a count over the range cannot (one local address has the range toward
    each destination), so it is spread over several, any of which may be the one."""
    if sockets <= ports:
        return "If they all go to one destination"
    return (
        "That is more than one local address can hold toward one destination, so they go to "
        "several; toward each of them"
    )


@dataclass(frozen=True)
class _Toward:
    """Where a count of ESTABLISHED goes: the destination as text, its endpoint where rows
    showed it, and what makes it an assumption (None: the selection names it)."""

    text: str
    address: Endpoint | None
    assumed: str | None
    evidence: Evidence


def _toward(index: SnapshotIndex, count: ReportedCount) -> _Toward | None:
    """The one destination a count of ESTABLISHED is about: the peer its selection names, or
    the one every listed row goes to (a host-wide count: then an assumption). None where
    nothing points at one -- a server's count of its many clients looks the same."""
    if count.peer is not None:
        return _Toward(
            text=count.peer,
            address=None,
            assumed=(
                f"that `{count.peer}` is the peer's host name: netstat printed names, and the "
                "grep would match this host's own name too"
            ),
            evidence=Evidence(
                "paste_peer",
                count.peer,
                "the host name the count's grep selects, taken as the peer",
            ),
        )
    listed = [sock for sock in index.sockets(TcpState.ESTABLISHED) if pile_candidate(index, sock)]
    destinations = {destination(sock.remote) for sock in listed}
    holders = {pids_key(sock.pids) for sock in listed}
    total = len(index.sockets(TcpState.ESTABLISHED))
    if len(listed) < 2 or len(listed) != total or len(destinations) != 1 or len(holders) != 1:
        return None
    (only,) = destinations
    text = str(only)
    return _Toward(
        text=text,
        address=only,
        assumed=(
            f"that the {number(count.sockets - total)} not listed go to {text} too: every "
            f"row the paste lists ({number(total)}) does, but the count covers "
            + (
                f"what `{count.selects}` selects"
                if count.selects is not None
                else "every ESTABLISHED connection here"
            )
            + "; count them per destination (ss -tn state established | awk '{print $4}' | "
            "sort | uniq -c | sort -rn | head) to know"
        ),
        evidence=Evidence(
            "listed_destination", text, f"where every listed row goes ({number(total)} rows)"
        ),
    )


def _established(
    index: SnapshotIndex, count: ReportedCount, thresholds: Thresholds
) -> Finding | None:
    if count.sockets < thresholds.established_pile_warning:
        return None
    # Rows the paste lists that already make a pile are the piled rule's, said there.
    listed = index.sockets(TcpState.ESTABLISHED)
    if established_piles(index, listed, thresholds.established_pile_warning):
        return None
    toward = _toward(index, count)
    if toward is None:
        return None
    pids = count_holders(index, count)
    evidence = [*paste_count_evidence(count), toward.evidence]
    severity, ran_out = ports_ran_out(index, Severity.WARNING)
    harm = PORTS_RAN_OUT if ran_out is not None else ""
    if ran_out is not None:
        evidence.append(ran_out)
    descriptors = error_line(index, ErrorKind.DESCRIPTORS)
    if descriptors is not None:
        severity = Severity.CRITICAL
        evidence.append(
            error_evidence(
                descriptors,
                "a process ran out of file descriptors (EMFILE): each of these connections "
                "holds one",
            )
        )
        harm += "; the paste's own error line says a process ran out of file descriptors"
    holder = f"{who(index, pids)} holds" if pids else "this host holds"
    unchecked = [PILE_IDLE_UNKNOWN]
    if toward.assumed is not None:
        unchecked.insert(0, toward.assumed)
    if not pids:
        unchecked.append(
            "which process holds them: the paste names none; ss -tnp state established shows "
            "the holders"
        )
    return Finding(
        code=ESTABLISHED_COUNTED,
        severity=severity,
        state=TcpState.ESTABLISHED,
        blame=Blame.LOCAL_APPLICATION,
        subject=(
            process_subject(index, pids, address=toward.address, endpoint=toward.text)
            if pids
            else Subject(kind=SubjectKind.PEER, endpoint=toward.text, address=toward.address)
        ),
        count=count.sockets,
        summary=(
            f"The paste counts {number(count.sockets)} ESTABLISHED connections, which "
            f"{holder} open to {toward.text}"
            + (" (by the rows it lists; the count itself is wider)" if toward.address else "")
            + f": {PILE_MEANING}{harm}."
        ),
        evidence=tuple(evidence),
        next_steps=pile_steps(toward.text),
        unchecked=tuple(unchecked),
    )


def _grown(index: SnapshotIndex, count: ReportedCount, thresholds: Thresholds) -> Finding | None:
    """Two or more counts of one selection, rising at every step by enough in all."""
    values = (*count.earlier, count.count)
    if len(values) < 2 or count.state in _NOT_HELD:
        return None
    if any(later < earlier for earlier, later in itertools.pairwise(values)):
        return None
    rise = values[-1] - values[0]
    if rise < thresholds.counted_growth_warning:
        return None
    listed = index.snapshot.sockets if count.state is None else index.sockets(count.state)
    if count.sockets <= len(listed):
        return None
    pids = count_holders(index, count)
    if count.state is None:
        what = "in any state"
        states = (
            "in which states they are: the count mixes every state; "
            f"`{count.command.split('|')[0].strip()}` with the same grep, its state column "
            "counted (| awk '{print $6}' | sort | uniq -c), tells"
        )
    else:
        what = f"in {count.state.value}"
        states = ""
    selection = f"{count.selects}, {what}" if count.selects is not None else what
    shown = ", then ".join(number(value) for value in values)
    if pids:
        subject = process_subject(index, pids)
    elif count.peer is not None:
        subject = Subject(kind=SubjectKind.PEER, endpoint=count.peer)
    else:
        subject = Subject(kind=SubjectKind.HOST, endpoint=count.selects)
    unchecked = [
        "how fast: the paste prints no time between its counts",
        *([states] if states else []),
    ]
    if not pids:
        unchecked.append("which process holds them: the count does not say")
    return Finding(
        code=COUNT_GROWING,
        severity=Severity.WARNING,
        state=count.state,
        blame=Blame.LOCAL_APPLICATION,
        subject=subject,
        count=count.sockets,
        summary=(
            f"The paste's own `{count.command}` printed {shown}: the connections it selects "
            f"({selection}) rose by {number(rise)} and never fell. They are opened faster than "
            "they end -- a build-up, the mark of a leak toward that selection: connections "
            "opened per request and neither closed nor returned to a pool, until a limit "
            "(descriptors, ports, the server's connections) is reached."
        ),
        evidence=(
            *paste_count_evidence(count),
            Evidence("rise", rise, "from the first count to the last"),
        ),
        next_steps=(
            f"{count.command}   # the same count again, a minute later: still rising is a leak",
            "ss -tanp | awk 'NR > 1 {print $NF}' | sort | uniq -c | sort -rn | head   # who holds "
            "the most",
        ),
        unchecked=tuple(unchecked),
    )


RULE = Rule(
    name="reported",
    summary="counts a pasted transcript printed (wc -l, grep -c) beyond the rows it lists",
    codes=(
        Code(
            CLOSE_WAIT_COUNTED,
            "the paste's own count of CLOSE_WAIT: connections the application has not closed",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            FIN_WAIT2_COUNTED,
            "the paste's own count of FIN_WAIT2: half-closed connections held open or waiting",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            TIME_WAIT_COUNTED,
            "the paste's own count of TIME_WAIT: connections closed per request, not reused",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            ESTABLISHED_COUNTED,
            "the paste's own count of ESTABLISHED toward one destination: connections not "
            "reused, or a leak",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            COUNT_GROWING,
            "the paste's own counts of one selection rising from count to count: a build-up",
            (Severity.WARNING,),
        ),
    ),
    check=check,
)
