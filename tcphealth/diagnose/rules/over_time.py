"""What only time shows, about no one state's rule in particular: sockets that outlive the
kernel's own timer for their state, kernel drop counters that rose during the window, and a
process whose count in a lingering state rises in every sample.

This rule has no check of a single snapshot; its step runs over a series of two or more
samples, after the other rules' steps.
"""

from __future__ import annotations

from dataclasses import replace

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.rule import Code, Rule, Window
from tcphealth.diagnose.timeline import connection_key
from tcphealth.diagnose.wording import number, plural
from tcphealth.model import (
    Blame,
    Evidence,
    Finding,
    Severity,
    Snapshot,
    Socket,
    Subject,
    SubjectKind,
    TcpState,
)
from tcphealth.series_facts import CounterDelta
from tcphealth.states import TIME_WAIT_SECONDS, explain

PAST_TIMER = "stuck-past-timer"
LISTEN_OVERFLOWS_RISING = "listen-overflows-rising"
TIME_WAIT_OVERFLOW_RISING = "time-wait-overflow-rising"
GROWING = "sockets-growing"
SYN_QUEUE_OVERFLOW_RISING = "syn-queue-overflow-rising"

# The counters whose rise is a finding of its own when no finding accounts for it (a code
# that does declares the counter in its ``explains_counters``, and gets the rise as evidence).
_RISING: tuple[tuple[str, str], ...] = (
    ("TcpExt.ListenOverflows", LISTEN_OVERFLOWS_RISING),
    ("TcpExt.TCPTimeWaitOverflow", TIME_WAIT_OVERFLOW_RISING),
    ("TcpExt.TCPReqQFullDoCookies", SYN_QUEUE_OVERFLOW_RISING),
    ("TcpExt.TCPReqQFullDrop", SYN_QUEUE_OVERFLOW_RISING),
)


def over_series(window: Window, findings: list[Finding], thresholds: Thresholds) -> list[Finding]:
    result = [*findings, *_past_timer(window)]
    result = _counters(window, result)
    return _growing(window, result, thresholds)


# --- past the kernel's own timer ----------------------------------------------------------------


def _timer_limit(sock: Socket, snapshot: Snapshot) -> float | None:
    """How long the kernel lets ``sock`` stay in its state on this host, where a fixed clock
    ends it; None where no clock applies (held sockets in FIN_WAIT2, any CLOSE_WAIT)."""
    if sock.state in (TcpState.SYN_SENT, TcpState.SYN_RECV):
        return explain(sock.state, snapshot.sysctls).limit_seconds
    if sock.state is TcpState.TIME_WAIT:
        return TIME_WAIT_SECONDS
    if sock.state is TcpState.FIN_WAIT2 and sock.is_orphan:
        return explain(sock.state, snapshot.sysctls).limit_seconds
    return None


def _past_timer(window: Window) -> list[Finding]:
    latest = window.latest
    over: dict[TcpState, list[tuple[Socket, float, float]]] = {}
    limits: dict[tuple[TcpState, bool | None], float | None] = {}
    for sock in latest.sockets:
        if sock.state not in (
            TcpState.SYN_SENT,
            TcpState.SYN_RECV,
            TcpState.TIME_WAIT,
            TcpState.FIN_WAIT2,
        ):
            continue
        cache_key = (sock.state, sock.is_orphan)
        if cache_key not in limits:
            limits[cache_key] = _timer_limit(sock, latest)
        limit = limits[cache_key]
        age = window.ages.get(connection_key(sock))
        # A margin for the sampling itself: a timer is checked by the kernel, not to the ms.
        if limit is None or age is None or age.observed_seconds <= limit + max(2.0, limit / 10):
            continue
        over.setdefault(sock.state, []).append((sock, age.observed_seconds, limit))
    findings: list[Finding] = []
    for state, entries in over.items():
        oldest = max(seen for _, seen, _ in entries)
        limit = entries[0][2]
        findings.append(
            Finding(
                code=PAST_TIMER,
                severity=Severity.WARNING,
                state=state,
                blame=Blame.NONE,
                subject=Subject(kind=SubjectKind.HOST),
                count=len(entries),
                summary=(
                    f"{plural(len(entries), 'socket')} stayed in {state.value} longer than the "
                    f"kernel's timer for it on this host allows ({limit:.0f} s), the oldest "
                    f"for {oldest:.0f} s: something keeps them there that the usual clock "
                    "does not end, or a new connection reused the same addresses and ports."
                ),
                evidence=(
                    Evidence("oldest_s", round(oldest, 1), "seen in this state for this long"),
                    Evidence("timer_s", round(limit, 1), "the kernel normally ends it by then"),
                ),
                next_steps=(f"tcphealth explain {state.value}",),
            )
        )
    return findings


# --- counters that rose -------------------------------------------------------------------------


def _counters(window: Window, findings: list[Finding]) -> list[Finding]:
    deltas = {delta.name: delta for delta in window.facts.counter_deltas}
    risen = {name for name, delta in deltas.items() if delta.delta > 0}
    # A since-boot reading of a counter the window saw rise: the rise says more.
    result = [
        finding
        for finding in findings
        if not risen.intersection(_since_boot_of(window, finding.code))
    ]
    for name, code in _RISING:
        delta = deltas.get(name)
        if delta is None or delta.delta <= 0:
            continue
        evidence = Evidence(
            delta.name.split(".")[-1],
            f"+{number(delta.delta)}",
            f"{delta.per_second:.1f}/s during the {window.seconds:.1f} s window: {delta.meaning}",
        )
        attached = False
        for i, finding in enumerate(result):
            declared = window.codes.get(finding.code)
            if declared is not None and name in declared.explains_counters:
                result[i] = replace(finding, evidence=(*finding.evidence, evidence))
                attached = True
        if not attached:
            result.append(_counter_finding(code, delta, window, evidence))
    return result


def _since_boot_of(window: Window, code: str) -> tuple[str, ...]:
    declared = window.codes.get(code)
    return declared.since_boot_of if declared is not None else ()


def _counter_finding(code: str, delta: CounterDelta, window: Window, evidence: Evidence) -> Finding:
    if code == LISTEN_OVERFLOWS_RISING:
        summary = (
            f"The kernel dropped {number(delta.delta)} incoming connections during the "
            f"{window.seconds:.1f} s window because an accept queue was full "
            f"({delta.per_second:.1f}/s), though no queue was full at the moments sampled: a "
            "listener falls behind in bursts."
        )
        blame, state = Blame.LOCAL_APPLICATION, TcpState.LISTEN
        steps: tuple[str, ...] = (
            "ss -ltn   # Recv-Q near Send-Q: that listener's accept queue",
            "nstat -az TcpExtListenOverflows TcpExtListenDrops",
        )
    elif code == SYN_QUEUE_OVERFLOW_RISING:
        answer = "cookies" if delta.name.endswith("DoCookies") else "drops"
        summary = (
            f"A listener's SYN queue overflowed {number(delta.delta)} times during the "
            f"{window.seconds:.1f} s window ({delta.per_second:.1f}/s, answered with {answer}), "
            "though no SYN queue was seen full in the samples: final ACKs go missing in bursts, "
            "or a backlog is too small for the rate of new connections."
        )
        blame, state = Blame.REMOTE_PEER, TcpState.SYN_RECV
        steps = (
            "nstat -az TcpExtTCPReqQFullDoCookies TcpExtTCPReqQFullDrop TcpExtSyncookiesSent",
            "dmesg | grep -i 'SYN flooding'   # names the port",
        )
    else:
        summary = (
            f"The kernel skipped TIME_WAIT for {number(delta.delta)} closing connections "
            f"during the {window.seconds:.1f} s window ({delta.per_second:.1f}/s) because "
            "tcp_max_tw_buckets was reached."
        )
        blame, state = Blame.KERNEL_LIMIT, TcpState.TIME_WAIT
        steps = ("sysctl net.ipv4.tcp_max_tw_buckets", "ss -tan state time-wait | wc -l")
    return Finding(
        code=code,
        severity=Severity.WARNING,
        state=state,
        blame=blame,
        subject=Subject(kind=SubjectKind.HOST),
        count=delta.delta,
        summary=summary,
        evidence=(evidence,),
        next_steps=steps,
    )


# --- growing ------------------------------------------------------------------------------------


def _growing(window: Window, findings: list[Finding], thresholds: Thresholds) -> list[Finding]:
    result = list(findings)
    for growth in window.facts.growth:
        if growth.per_minute <= 0:
            continue
        evidence = Evidence(
            "growth_per_min",
            round(growth.per_minute, 1),
            f"{number(growth.first)} -> {number(growth.last)} in {window.seconds:.1f} s",
        )
        attached = False
        for i, finding in enumerate(result):
            if finding.subject.pid == growth.pid and finding.state is growth.state:
                result[i] = replace(finding, evidence=(*finding.evidence, evidence))
                attached = True
        if (
            attached
            or not growth.steady
            or window.samples < thresholds.persist_samples
            or growth.per_minute < thresholds.growth_per_minute_warning
        ):
            continue
        who = f"pid {growth.pid}" + (f" ({growth.process})" if growth.process else "")
        result.append(
            Finding(
                code=GROWING,
                severity=Severity.WARNING,
                state=growth.state,
                blame=Blame.LOCAL_APPLICATION,
                subject=Subject(
                    kind=SubjectKind.PROCESS,
                    pid=growth.pid,
                    process=growth.process,
                    pids=(growth.pid,),
                ),
                count=growth.last,
                summary=(
                    f"{who} holds more {growth.state.value} connections in every sample: "
                    f"{number(growth.first)} -> {number(growth.last)} in {window.span_text()}, "
                    f"{growth.per_minute:.0f} per minute; if that goes on it runs out of "
                    "descriptors or ports."
                ),
                evidence=(evidence,),
                next_steps=(f"tcphealth watch --pid {growth.pid}",),
            )
        )
    return result


RULE = Rule(
    name="over_time",
    summary="sockets past the kernel's timer, drop counters rising, a process's sockets growing",
    codes=(
        Code(
            PAST_TIMER,
            "sockets stayed in a state longer than the kernel's timer for it",
            (Severity.WARNING,),
            from_series=True,
        ),
        Code(
            LISTEN_OVERFLOWS_RISING,
            "accept-queue overflows rose though no queue was seen full",
            (Severity.WARNING,),
            from_series=True,
        ),
        Code(
            TIME_WAIT_OVERFLOW_RISING,
            "closes skipped TIME_WAIT because tcp_max_tw_buckets was reached",
            (Severity.WARNING,),
            from_series=True,
        ),
        Code(
            SYN_QUEUE_OVERFLOW_RISING,
            "SYNs met a full SYN queue (cookies or drops) during the window",
            (Severity.WARNING,),
            from_series=True,
        ),
        Code(
            GROWING,
            "a process holds more sockets in a lingering state in every sample",
            (Severity.WARNING,),
            from_series=True,
        ),
    ),
    check=None,
    step=over_series,
)
