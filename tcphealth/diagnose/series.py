"""Diagnosis with time: a short series of samples of one host, oldest first.

The latest sample is diagnosed as a snapshot (:func:`tcphealth.diagnose.diagnose`); the series
then corrects and adds to those findings with what only time shows:

* CLOSE_WAIT held by a process: when the same connections stay through the whole window it is
  a leak (the snapshot's finding stands, with how long they stayed); when most are replaced
  from one sample to the next the application does close them, only late -- a *slow close*,
  one severity lower, not a leak.
* SYN_SENT that stays over several samples is a peer that does not answer (``syn-sent-stuck``);
  one that came and went was a blip and says nothing.
* A socket seen in a state for longer than the kernel's own timer for it allows on this host
  (SYN_SENT past the SYN retry budget, an orphaned FIN_WAIT2 past tcp_fin_timeout, TIME_WAIT
  past 60 s) is flagged: something holds it that the usual clock does not end.
* Kernel counters that rose during the window (ListenOverflows, TCPTimeWaitOverflow) mean
  drops happening now, not at some time since boot.
* A process whose count in a lingering state rises in every sample, fast, is growing.

Everything here is pure: samples in, findings and facts out.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from tcphealth.diagnose import diagnose, finding_order
from tcphealth.diagnose.close_wait import HELD, NOT_CLOSED, NOT_READING, UNREAD_DATA
from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import destination, owned_by_fd
from tcphealth.diagnose.timeline import Age, ConnectionKey, ages_over, connection_key
from tcphealth.diagnose.wording import destination_text, number, percent, pids_key, plural
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
from tcphealth.states import TIME_WAIT_SECONDS, explain

_CLOSE_WAIT_HELD_CODES = frozenset({NOT_CLOSED, NOT_READING, UNREAD_DATA, HELD})
SLOW_CLOSE = "close-wait-slow-close"
SYN_SENT_STUCK = "syn-sent-stuck"
PAST_TIMER = "stuck-past-timer"
LISTEN_OVERFLOWS_RISING = "listen-overflows-rising"
TIME_WAIT_OVERFLOW_RISING = "time-wait-overflow-rising"
GROWING = "sockets-growing"

# Counters whose rise during the window the series reports (name, what a rise means).
WATCHED_COUNTERS: tuple[tuple[str, str], ...] = (
    ("TcpExt.ListenOverflows", "connections dropped: an accept queue was full"),
    ("TcpExt.ListenDrops", "connection attempts dropped by listeners, for any reason"),
    ("TcpExt.TCPTimeWaitOverflow", "TIME_WAIT skipped: tcp_max_tw_buckets reached"),
    ("Tcp.RetransSegs", "segments retransmitted"),
    ("TcpExt.TCPSynRetrans", "SYNs and SYN-ACKs retransmitted"),
    ("TcpExt.TCPAbortOnTimeout", "connections aborted after too many retransmissions"),
)

# States whose count per process is followed for growth: the ones that linger when something
# is wrong. LISTEN does not grow; TIME_WAIT and SYN_RECV rise and fall with ordinary load.
GROWTH_STATES: tuple[TcpState, ...] = (
    TcpState.ESTABLISHED,
    TcpState.CLOSE_WAIT,
    TcpState.FIN_WAIT2,
    TcpState.SYN_SENT,
    TcpState.FIN_WAIT1,
    TcpState.LAST_ACK,
)


@dataclass(frozen=True)
class CounterDelta:
    name: str  # qualified, as in Snapshot.counters: "TcpExt.ListenOverflows"
    delta: int
    per_second: float
    meaning: str


@dataclass(frozen=True)
class Growth:
    """The sockets one process holds in one state, first and last sample of the window."""

    pid: int
    process: str | None
    state: TcpState
    first: int
    last: int
    per_minute: float
    steady: bool  # never fell from one sample to the next


@dataclass(frozen=True)
class SeriesFacts:
    """What a series shows besides findings: how long, the counts over time, the counters'
    rises, per-process growth, and each current socket's age."""

    samples: int
    started_at: float
    ended_at: float
    state_history: tuple[tuple[float, Mapping[TcpState, int]], ...]
    counter_deltas: tuple[CounterDelta, ...]
    growth: tuple[Growth, ...]
    ages: Mapping[ConnectionKey, Age]

    @property
    def window_seconds(self) -> float:
        return max(0.0, self.ended_at - self.started_at)


def diagnose_series(
    series: Sequence[Snapshot],
    thresholds: Thresholds | None = None,
    ages: Mapping[ConnectionKey, Age] | None = None,
) -> tuple[list[Finding], SeriesFacts]:
    """Findings about the latest sample of ``series`` (oldest first), corrected and extended by
    what the series shows, and the facts behind them.

    ``ages`` may come from a :class:`~tcphealth.diagnose.timeline.Tracker` that has followed
    the host for longer than ``series`` (``watch``); by default they are worked out from
    ``series`` alone. A socket counts as present through the window when it was seen in its
    state in at least as many samples in a row as the window holds.
    """
    if not series:
        raise ValueError("a series needs at least one sample")
    effective = thresholds if thresholds is not None else Thresholds()
    latest = series[-1]
    ages = ages_over(series) if ages is None else ages
    facts = SeriesFacts(
        samples=len(series),
        started_at=series[0].host.taken_at,
        ended_at=latest.host.taken_at,
        state_history=tuple((s.host.taken_at, _state_counts(s)) for s in series),
        counter_deltas=_counter_deltas(series),
        growth=_growth(series),
        ages=ages,
    )
    findings = diagnose(latest, effective)
    if len(series) < 2:
        return findings, facts
    window = _Window(series, ages, facts)
    findings = _close_wait(window, findings, effective)
    findings = _syn_sent(window, findings, effective)
    findings.extend(_past_timer(window))
    findings = _counters(window, findings)
    findings = _growing(window, findings, effective)
    findings.sort(key=finding_order)
    return findings, facts


@dataclass(frozen=True)
class _Window:
    series: Sequence[Snapshot]
    ages: Mapping[ConnectionKey, Age]
    facts: SeriesFacts

    @property
    def samples(self) -> int:
        return len(self.series)

    @property
    def seconds(self) -> float:
        return self.facts.window_seconds

    def stayed(self, sock: Socket) -> bool:
        """Seen in its state in every sample of the window."""
        age = self.ages.get(connection_key(sock))
        return age is not None and age.samples >= self.samples

    def span_text(self) -> str:
        return f"{self.seconds:.1f} s across {self.samples} samples"


def _state_counts(snapshot: Snapshot) -> dict[TcpState, int]:
    return dict(Counter(sock.state for sock in snapshot.sockets))


def _counter_deltas(series: Sequence[Snapshot]) -> tuple[CounterDelta, ...]:
    first, last = series[0], series[-1]
    seconds = last.host.taken_at - first.host.taken_at
    deltas: list[CounterDelta] = []
    for name, meaning in WATCHED_COUNTERS:
        before, after = first.counters.get(name), last.counters.get(name)
        # A counter that went down was reset (a reboot, a new namespace): no delta to tell.
        if before is None or after is None or after < before or len(series) < 2:
            continue
        delta = after - before
        deltas.append(CounterDelta(name, delta, delta / seconds if seconds > 0 else 0.0, meaning))
    return tuple(deltas)


def _held_counts(snapshot: Snapshot) -> Counter[tuple[int, TcpState]]:
    counts: Counter[tuple[int, TcpState]] = Counter()
    for sock in snapshot.sockets:
        if sock.state in GROWTH_STATES and owned_by_fd(sock):
            for pid in sock.pids:
                counts[(pid, sock.state)] += 1
    return counts


def _growth(series: Sequence[Snapshot]) -> tuple[Growth, ...]:
    if len(series) < 2:
        return ()
    seconds = series[-1].host.taken_at - series[0].host.taken_at
    if seconds <= 0:
        return ()
    per_sample = [_held_counts(snapshot) for snapshot in series]
    names = {process.pid: process.name for process in series[-1].processes}
    growth: list[Growth] = []
    for key in set(per_sample[0]) | set(per_sample[-1]):
        counts = [sample.get(key, 0) for sample in per_sample]
        if counts[-1] == counts[0]:
            continue
        pid, state = key
        growth.append(
            Growth(
                pid=pid,
                process=names.get(pid),
                state=state,
                first=counts[0],
                last=counts[-1],
                per_minute=(counts[-1] - counts[0]) / seconds * 60,
                steady=all(b >= a for a, b in itertools.pairwise(counts)),
            )
        )
    growth.sort(key=lambda g: (-g.per_minute, g.pid, g.state.value))
    return tuple(growth)


# --- CLOSE_WAIT: leak or slow close ---------------------------------------------------------------


def _held_close_wait(snapshot: Snapshot) -> dict[tuple[int, ...], set[ConnectionKey]]:
    groups: dict[tuple[int, ...], set[ConnectionKey]] = {}
    for sock in snapshot.sockets:
        if sock.state is TcpState.CLOSE_WAIT and owned_by_fd(sock):
            groups.setdefault(pids_key(sock.pids), set()).add(connection_key(sock))
    return groups


def _replaced_ratio(memberships: Sequence[set[ConnectionKey]]) -> float | None:
    """The mean share of one sample's members gone by the next; None without a pair to
    compare."""
    ratios = [
        len(before - after) / len(before)
        for before, after in itertools.pairwise(memberships)
        if before
    ]
    return sum(ratios) / len(ratios) if ratios else None


def _gone_by_last(memberships: Sequence[set[ConnectionKey]]) -> float | None:
    """The share of the first sample's members no longer there in the last; None when the
    first had none, or with fewer than three samples (with two it is the replaced ratio)."""
    if len(memberships) < 3 or not memberships[0]:
        return None
    first, last = memberships[0], memberships[-1]
    return len(first - last) / len(first)


def _churn(replaced: float | None, gone: float | None, ratio: float) -> str | None:
    """How the members were seen to be replaced, worded for the summary, when at least
    ``ratio`` of them were: from one sample to the next, or over the whole window."""
    if replaced is not None and replaced >= ratio:
        return f"{percent(replaced)} of them were replaced from one sample to the next"
    if gone is not None and gone >= ratio:
        return f"{percent(gone)} of those in the first sample were closed by the last"
    return None


def _close_wait(window: _Window, findings: list[Finding], thresholds: Thresholds) -> list[Finding]:
    per_sample = [_held_close_wait(snapshot) for snapshot in window.series]
    latest = per_sample[-1]
    result: list[Finding] = []
    for finding in findings:
        if finding.code not in _CLOSE_WAIT_HELD_CODES:
            result.append(finding)
            continue
        pids = _finding_pids(finding, latest)
        members = latest.get(pids, set())
        stayed = sum(1 for key in members if _stayed_key(window, key))
        replaced = _replaced_ratio([sample.get(pids, set()) for sample in per_sample])
        evidence = [
            Evidence(
                "stayed",
                stayed,
                f"of {number(len(members))} present in all {window.samples} samples "
                f"({window.seconds:.1f} s)",
            )
        ]
        if replaced is not None:
            evidence.append(
                Evidence(
                    "replaced_ratio",
                    round(replaced, 2),
                    "share of each sample's CLOSE_WAIT gone by the next",
                )
            )
        # A socket that lives longer than one interval but shorter than the window is seen
        # in two samples and replaced by the third: compare the first sample with the last
        # too, or a slow closer watched at a short interval would pass for a leak.
        gone = _gone_by_last([sample.get(pids, set()) for sample in per_sample])
        if gone is not None:
            evidence.append(
                Evidence(
                    "gone_by_last",
                    round(gone, 2),
                    "share of the first sample's CLOSE_WAIT closed by the last",
                )
            )
        churn = _churn(replaced, gone, thresholds.churn_ratio)
        if churn is not None and stayed < thresholds.close_wait_warning:
            result.append(_slow_close(finding, window, churn, stayed, evidence))
            continue
        summary = finding.summary
        if stayed:
            summary = (
                f"{summary} {number(stayed)} of them stayed through the whole "
                f"{window.span_text()}: a leak, not a slow close."
            )
        result.append(replace(finding, summary=summary, evidence=(*finding.evidence, *evidence)))
    return result


def _finding_pids(
    finding: Finding, groups: Mapping[tuple[int, ...], set[ConnectionKey]]
) -> tuple[int, ...]:
    """The pid set a CLOSE_WAIT finding was made for: its ``pids`` evidence where several
    processes share the sockets, else its subject's pid."""
    for item in finding.evidence:
        if item.name == "pids" and isinstance(item.value, str):
            return pids_key(int(pid) for pid in item.value.split(","))
    pid = finding.subject.pid
    return (pid,) if pid is not None else ()


def _stayed_key(window: _Window, key: ConnectionKey) -> bool:
    age = window.ages.get(key)
    return age is not None and age.samples >= window.samples


def _slow_close(
    finding: Finding,
    window: _Window,
    churn: str,
    stayed: int,
    evidence: list[Evidence],
) -> Finding:
    lower = Severity(max(Severity.INFO, finding.severity - 1))
    holder = finding.subject.describe()
    summary = (
        f"{holder} closes its CLOSE_WAIT connections, but late: {churn}, "
        f"and {number(stayed)} stayed through the "
        f"whole {window.span_text()}, so this is an application slow to call close(), not a "
        f"leak; at any moment {number(finding.count)} wait for it."
    )
    return replace(
        finding,
        code=SLOW_CLOSE,
        severity=lower,
        summary=summary,
        evidence=(
            Evidence("close_wait", finding.count, "in the latest sample"),
            *evidence,
            *(item for item in finding.evidence if item.name == "pids"),
        ),
        next_steps=(
            *finding.next_steps[:1],
            "Find what delays close() after the peer's FIN: a slow handler, a busy worker "
            "pool, or a connection pool that closes idle connections only on its next sweep.",
        ),
    )


# --- SYN_SENT that stays ------------------------------------------------------------------------

_SYN_SENT_SNAPSHOT_CODES = frozenset({"syn-sent-unanswered", "syn-sent-unconfirmed"})


def _syn_sent(window: _Window, findings: list[Finding], thresholds: Thresholds) -> list[Finding]:
    if window.samples < thresholds.persist_samples:
        return findings
    stuck: dict[str, list[Socket]] = {}
    for sock in window.series[-1].sockets:
        if sock.state is TcpState.SYN_SENT and window.stayed(sock):
            stuck.setdefault(destination_text(destination(sock.remote)), []).append(sock)
    if not stuck:
        return findings
    result: list[Finding] = []
    for finding in findings:
        target = finding.subject.endpoint
        if finding.state is TcpState.SYN_SENT and target in stuck:
            if finding.code in _SYN_SENT_SNAPSHOT_CODES:
                continue  # replaced by the stuck finding below
            evidence = Evidence(
                "stayed", len(stuck.pop(target)), f"in SYN_SENT through {window.span_text()}"
            )
            result.append(replace(finding, evidence=(*finding.evidence, evidence)))
            continue
        result.append(finding)
    for target, sockets in stuck.items():
        result.append(_syn_sent_stuck(window, target, sockets, thresholds))
    return result


def _syn_sent_stuck(
    window: _Window, target: str, sockets: list[Socket], thresholds: Thresholds
) -> Finding:
    count = len(sockets)
    holders = Counter(pids_key(sock.pids) for sock in sockets if sock.pids)
    pids = holders.most_common(1)[0][0] if len(holders) == 1 else ()
    names = {process.pid: process.name for process in window.series[-1].processes}
    process = names.get(pids[0]) if pids else None
    client = f"pid {pids[0]}" + (f" ({process})" if process else "") if pids else "Local clients"
    severity = Severity.CRITICAL if count >= thresholds.syn_sent_critical else Severity.WARNING
    limit = explain(TcpState.SYN_SENT, window.series[-1].sysctls).limit_seconds
    oldest = max(window.ages[connection_key(sock)].observed_seconds for sock in sockets)
    return Finding(
        code=SYN_SENT_STUCK,
        severity=severity,
        state=TcpState.SYN_SENT,
        blame=Blame.REMOTE_PEER,
        subject=Subject(
            kind=SubjectKind.PEER, pid=pids[0] if pids else None, process=process, endpoint=target
        ),
        count=count,
        summary=(
            f"{client} has {plural(count, 'connection attempt')} to {target} that stayed "
            f"unanswered through the whole {window.span_text()}: the peer is down or a "
            "firewall drops the SYNs -- a dead peer, not a passing blip."
        ),
        evidence=(
            Evidence("stayed", count, f"in SYN_SENT in all {window.samples} samples"),
            Evidence("oldest_s", round(oldest, 1), "seen in SYN_SENT for at least this long"),
            Evidence(
                "syn_retry_budget_s",
                None if limit is None else round(limit),
                "the kernel gives up on each attempt after this",
            ),
        ),
        next_steps=(
            f"ss -tnpo state syn-sent dst {target}",
            f"traceroute -T -p {target.rsplit(':', 1)[-1]} {target.rsplit(':', 1)[0].strip('[]')}"
            if ":" in target
            else f"traceroute -T {target}",
        ),
    )


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


def _past_timer(window: _Window) -> list[Finding]:
    latest = window.series[-1]
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


def _counters(window: _Window, findings: list[Finding]) -> list[Finding]:
    deltas = {delta.name: delta for delta in window.facts.counter_deltas}
    overflows = deltas.get("TcpExt.ListenOverflows")
    tw_overflow = deltas.get("TcpExt.TCPTimeWaitOverflow")
    result = list(findings)
    for delta, code, related in (
        (overflows, LISTEN_OVERFLOWS_RISING, ("listen-queue-full", "syn-sent-to-full-listener")),
        (tw_overflow, TIME_WAIT_OVERFLOW_RISING, ("time-wait-bucket-limit",)),
    ):
        if delta is None or delta.delta <= 0:
            continue
        evidence = Evidence(
            delta.name.split(".")[-1],
            f"+{number(delta.delta)}",
            f"{delta.per_second:.1f}/s during the {window.seconds:.1f} s window: {delta.meaning}",
        )
        attached = False
        for i, finding in enumerate(result):
            if finding.code in related:
                result[i] = replace(finding, evidence=(*finding.evidence, evidence))
                attached = True
        if not attached:
            result.append(_counter_finding(code, delta, window, evidence))
    return result


def _counter_finding(
    code: str, delta: CounterDelta, window: _Window, evidence: Evidence
) -> Finding:
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


def _growing(window: _Window, findings: list[Finding], thresholds: Thresholds) -> list[Finding]:
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
                subject=Subject(kind=SubjectKind.PROCESS, pid=growth.pid, process=growth.process),
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
