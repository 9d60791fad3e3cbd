"""The SYN queue: half-open handshakes a listener keeps while it waits for clients' final ACKs.

Besides the accept queue (the listeners rule), every listener keeps the handshakes it has
answered but not yet seen completed. That queue holds the listen backlog plus one
(states.syn_queue_capacity); when it is full the kernel answers further SYNs with a SYN cookie
(``tcp_syncookies`` 1: the handshake still completes, but without the options the SYN asked
for, such as window scaling) or drops them (0: clients resend and may time out).
TCPReqQFullDoCookies / SyncookiesSent and TCPReqQFullDrop count those since boot.

A full SYN queue is final ACKs not arriving: a SYN flood from spoofed addresses, or clients
and a path that lose the last packet of the handshake. Under legitimate load, cookies mean the
server's backlog is too small for its rate of new connections.

The kernel also says so in its log, once per listening socket: "Possible SYN flooding on port
X. Sending cookies." (or "Dropping request."). Pasted, that line proves the listener's SYN
queue was full at the time of the line, whatever the look shows now. Where the paste shows that
listener's accept queue full, the SYN queue filled behind it -- handshakes whose final ACK was
dropped for want of room stay half open -- so the line is the consequence of an application
that does not accept, not of a flood, and the listeners rule's finding is the cause.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.shared import (
    STILL_UNKNOWN,
    assess_accept_queue,
    listener_subject,
    log_evidence,
    logged,
    logged_times,
    logged_when,
    syn_queue_room,
)
from tcphealth.diagnose.wording import number
from tcphealth.model import (
    Blame,
    Endpoint,
    Evidence,
    Finding,
    IPAddress,
    KernelEvent,
    KernelMessage,
    Severity,
    Socket,
    Subject,
    SubjectKind,
    TcpState,
)
from tcphealth.states import host_or_default

SYN_QUEUE_FULL = "syn-queue-full"
SYN_QUEUE_OVERFLOWED = "syn-queue-overflowed"

# Counters, since boot, of SYNs that met a full SYN queue; how each one reads.
_OVERFLOW_COUNTERS: tuple[tuple[str, str], ...] = (
    ("TcpExt.TCPReqQFullDoCookies", "SYNs answered with a cookie because a SYN queue was full"),
    ("TcpExt.SyncookiesSent", "SYN cookies sent"),
    ("TcpExt.SyncookiesRecv", "handshakes completed from a cookie"),
    ("TcpExt.SyncookiesFailed", "ACKs with a cookie that did not check out"),
    ("TcpExt.TCPReqQFullDrop", "SYNs dropped because a SYN queue was full and cookies were off"),
)


def _counter_evidence(index: SnapshotIndex) -> list[Evidence]:
    counters = index.snapshot.counters
    return [
        Evidence(name.split(".")[-1], counters[name], f"{meaning}, host-wide since boot")
        for name, meaning in _OVERFLOW_COUNTERS
        if name in counters
    ]


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    sysctls = index.snapshot.sysctls
    cookies, cookies_assumed = host_or_default(sysctls, "tcp_syncookies")
    floods = logged(index, KernelEvent.SYN_FLOOD)
    said = {message.cookies for message in floods if message.cookies is not None}
    if cookies_assumed and len(said) == 1:
        # tcp_syncookies is not in the paste, but the kernel's line says what it did.
        cookies, cookies_assumed = (1 if said.pop() else 0), False
    findings: list[Finding] = []
    full_at: dict[int, int] = {}  # id(listener) -> its finding's place in findings
    for listener_id, half_open in index.syn_recv_by_listener.items():
        listener = index.listener_by_id[listener_id]
        if assess_accept_queue(listener, sysctls).is_full(thresholds):
            # A full accept queue drops every SYN first (ListenOverflows): the listeners
            # rule's finding says it all.
            continue
        finding = _full_queue(index, listener, len(half_open), cookies, cookies_assumed)
        if finding is not None:
            full_at[listener_id] = len(findings)
            findings.append(finding)
    for message in floods:
        named = _listener_of(index, message)
        place = full_at.get(id(named)) if named is not None else None
        if place is not None:
            # The look shows the same queue full: the log line is more evidence of it.
            found = findings[place]
            findings[place] = replace(
                found, evidence=(*found.evidence, *log_evidence(message, _meaning(message)))
            )
            continue
        findings.append(_logged_flood(index, message, named, thresholds))
    if floods:
        return findings  # the since-boot counters are in the log's findings' evidence
    if not index.sockets(TcpState.SYN_RECV):
        # Nothing is half open now. (Where something is, the handshake rule shows these
        # counters beside the SYN_RECV it speaks of.)
        since_boot = _overflowed_since_boot(index, cookies)
        if since_boot is not None:
            findings.append(since_boot)
    return findings


def _full_queue(
    index: SnapshotIndex, listener: Socket, half_open: int, cookies: int, cookies_assumed: bool
) -> Finding | None:
    backlog = listener.listen_backlog
    capacity = syn_queue_room(listener, index.snapshot.sysctls)
    if backlog is None or not capacity or half_open < capacity:
        # Without the backlog the queue's size is unknown (the handshake rule says what the
        # SYN_RECV show); with tcp_syncookies 2 there is no SYN queue to fill.
        return None
    max_syn_backlog = index.snapshot.sysctls.tcp_max_syn_backlog
    endpoint = str(listener.local)
    if cookies:
        severity = Severity.WARNING
        consequence = (
            "further SYNs are answered with SYN cookies: those connections still open, but "
            "without the TCP options their SYN asked for (window scaling, SACK)"
        )
    else:
        severity = Severity.CRITICAL
        consequence = (
            "cookies are off (tcp_syncookies = 0), so further SYNs are dropped and clients "
            "resend them and may time out"
        )
    evidence = [
        Evidence("syn_recv", half_open, "half-open handshakes on this listener"),
        Evidence("syn_queue_capacity", capacity, "the listen backlog plus one"),
        Evidence("listen_backlog", backlog, None),
        Evidence(
            "tcp_syncookies",
            cookies,
            "1: cookies when a SYN queue is full, 0: drop"
            + (" (default assumed)" if cookies_assumed else ""),
        ),
    ]
    if not cookies and max_syn_backlog is not None:
        evidence.append(
            Evidence("tcp_max_syn_backlog", max_syn_backlog, "without cookies: drop at 3/4 of it")
        )
    evidence.extend(_counter_evidence(index))
    listen_drops = index.snapshot.counters.get("TcpExt.ListenDrops")
    if not cookies and listen_drops is not None:
        # A drop at 3/4 of tcp_max_syn_backlog counts only here, not in TCPReqQFullDrop.
        evidence.append(
            Evidence("ListenDrops", listen_drops, "SYNs dropped at listeners, host-wide since boot")
        )
    return Finding(
        code=SYN_QUEUE_FULL,
        severity=severity,
        state=TcpState.SYN_RECV,
        blame=Blame.REMOTE_PEER,
        subject=listener_subject(index, listener),
        count=half_open,
        summary=(
            f"The SYN queue of {endpoint} is full ({number(half_open)} half-open handshakes "
            f"for room for {number(capacity)}): clients' final ACKs do not arrive -- a SYN "
            f"flood, or clients or a path that lose them; {consequence}."
        ),
        evidence=tuple(evidence),
        next_steps=(
            f"ss -tn state syn-recv 'sport = :{listener.local.port}' | awk '{{print $4}}' | "
            "cut -d: -f1 | sort | uniq -c | sort -rn | head   # many sources: a flood",
            "nstat -az TcpExtTCPReqQFullDoCookies TcpExtSyncookiesSent TcpExtTCPReqQFullDrop",
            "dmesg | grep -i 'SYN flooding'",
            "If the load is legitimate, give listen() a larger backlog (and net.core.somaxconn) "
            "so that the queue holds the handshakes in flight.",
        ),
    )


def _listener_of(index: SnapshotIndex, message: KernelMessage) -> Socket | None:
    """The listener the log line names: its port, and its address where the kernel printed
    one (a wildcard listener is printed as 0.0.0.0 or [::])."""
    named: IPAddress | None = None
    if message.address is not None:
        try:
            named = ipaddress.ip_address(message.address)
        except ValueError:
            named = None
    for listener in index.sockets(TcpState.LISTEN):
        if listener.local.port != message.port:
            continue
        if named is None:
            return listener
        address = listener.local.address
        if address == named or (address is None and named.is_unspecified):
            return listener
    return None


def _named_endpoint(message: KernelMessage) -> Endpoint:
    """The listener the line names: its address (5.10+) and port, or "*:PORT" where the line
    gives the port alone (the address unknown, not a wildcard)."""
    port = message.port or 0
    if message.address is not None:
        try:
            return Endpoint(ipaddress.ip_address(message.address), port)
        except ValueError:
            pass
    return Endpoint(ipaddress.IPv4Address(0), port, name="*")


def _meaning(message: KernelMessage) -> str:
    action = "answered with SYN cookies" if message.cookies else "dropped"
    return f"the listener's SYN queue was full; further SYNs were {action}"


def _logged_flood(
    index: SnapshotIndex, message: KernelMessage, listener: Socket | None, thresholds: Thresholds
) -> Finding:
    port = message.port or 0
    named = _named_endpoint(message)
    quoted = str(named) if message.address is not None else str(port)  # as the line says it
    where = str(named) if message.address is not None else f"port {port}"
    if message.cookies:
        severity = Severity.WARNING
        consequence = (
            "further SYNs were answered with cookies: those connections still opened, but "
            "without the options their SYN asked for (window scaling, SACK)"
        )
    else:
        severity = Severity.CRITICAL
        consequence = (
            "cookies were off, so further SYNs were dropped and clients resent them or timed out"
        )
    evidence = [*log_evidence(message, _meaning(message)), *_counter_evidence(index)]
    unchecked = [STILL_UNKNOWN]
    half_open = 0
    blame = Blame.REMOTE_PEER
    if listener is not None:
        subject = listener_subject(index, listener)
        half_open = len(index.syn_recv_by_listener.get(id(listener), ()))
        queue = assess_accept_queue(listener, index.snapshot.sysctls)
        evidence.append(Evidence("syn_recv", half_open, "half-open on this listener at the look"))
        if queue.queued is not None:
            evidence.append(Evidence("accept_queue", queue.queued, queue.limit_text()))
        accept_full = queue.is_full(thresholds)
    else:
        # No listening socket in the paste: the one the line names ("*:PORT" where it gives
        # the port alone), so that a filter on it shows the finding.
        subject = Subject(kind=SubjectKind.LISTENER, endpoint=where, address=named)
        accept_full = False
        unchecked.append(
            f"the listener on {where}: the paste shows no listening socket there, so its "
            "backlog and owner are unknown"
        )
    if accept_full:
        # The handshakes whose last ACK met a full accept queue stay half open and fill the
        # SYN queue behind it: the application's, not a flood.
        blame = Blame.LOCAL_APPLICATION
        cause = (
            " The paste shows this listener's accept queue full: handshakes whose final ACK "
            "found no room stay half open and fill the SYN queue behind it, so the line is "
            "the consequence of an application that does not accept, not of a flood."
        )
    else:
        cause = (
            " A full SYN queue is handshakes whose final ACK did not come: a SYN flood, clients "
            "or a path that lose it, or a backlog too small for the rate of new connections."
        )
        unchecked.append(
            "which of these: the sources of the half-open handshakes while it happens (ss -tn "
            f"state syn-recv 'sport = :{message.port}'), and the listen backlog against the "
            "rate of new connections"
        )
    return Finding(
        code=SYN_QUEUE_FULL,
        severity=severity,
        # Without a half-open handshake listed, the finding is about the listener as a whole
        # (so that a filter on its port shows it).
        state=TcpState.SYN_RECV if half_open else None,
        blame=blame,
        subject=subject,
        count=half_open,
        summary=(
            f"The kernel logged 'Possible SYN flooding on port {quoted}' "
            f"{logged_times(message)} ({logged_when(message)}): at the time of the log line "
            f"that listener's SYN queue was full, and {consequence}." + cause
        ),
        evidence=tuple(evidence),
        next_steps=(
            f"ss -ltn 'sport = :{message.port}'   # Recv-Q against Send-Q: is the accept "
            "queue full?",
            "nstat -az TcpExtTCPReqQFullDoCookies TcpExtTCPReqQFullDrop TcpExtListenOverflows"
            "   # twice, a minute apart: still happening?",
            f"ss -tn state syn-recv 'sport = :{message.port}' | awk '{{print $4}}' | cut -d: "
            "-f1 | sort | uniq -c | sort -rn | head   # many sources: a flood",
        ),
        unchecked=tuple(unchecked),
    )


def _overflowed_since_boot(index: SnapshotIndex, cookies: int) -> Finding | None:
    counters = index.snapshot.counters
    cookies_sent = counters.get("TcpExt.TCPReqQFullDoCookies") or counters.get(
        "TcpExt.SyncookiesSent"
    )
    dropped = counters.get("TcpExt.TCPReqQFullDrop")
    if not cookies_sent and not dropped:
        return None
    parts = []
    if cookies_sent:
        parts.append(f"answered {number(cookies_sent)} SYNs with cookies")
    if dropped:
        parts.append(f"dropped {number(dropped)} SYNs")
    return Finding(
        code=SYN_QUEUE_OVERFLOWED,
        severity=Severity.INFO,
        state=TcpState.SYN_RECV,
        blame=Blame.NONE,
        subject=Subject(kind=SubjectKind.HOST),
        count=0,  # SYNs since boot, not sockets now: the evidence gives them
        summary=(
            f"Since boot the kernel {' and '.join(parts)} because a listener's SYN queue was "
            "full; no handshake is half open now. One look cannot say when: compare two samples "
            "(--samples 2) to see whether it is still happening."
        ),
        evidence=tuple(_counter_evidence(index)),
        next_steps=(
            "nstat -az TcpExtTCPReqQFullDoCookies TcpExtSyncookiesSent TcpExtTCPReqQFullDrop"
            "   # twice, a minute apart",
            "dmesg | grep -i 'SYN flooding'   # names the port",
        ),
        unchecked=("which listener: the counters are host-wide",),
    )


RULE = Rule(
    name="syn_queue",
    summary="SYN queues full of half-open handshakes; SYN cookies and SYN drops",
    codes=(
        Code(
            SYN_QUEUE_FULL,
            "a listener's SYN queue is full, or the kernel logged it full: new SYNs get cookies "
            "(or are dropped)",
            (Severity.WARNING, Severity.CRITICAL),
            explains_counters=("TcpExt.TCPReqQFullDoCookies", "TcpExt.TCPReqQFullDrop"),
        ),
        Code(
            SYN_QUEUE_OVERFLOWED,
            "SYN cookies were sent or SYNs dropped since boot; nothing is half open now",
            (Severity.INFO,),
            since_boot_of=(
                "TcpExt.TCPReqQFullDoCookies",
                "TcpExt.SyncookiesSent",
                "TcpExt.TCPReqQFullDrop",
            ),
        ),
    ),
    check=check,
)
