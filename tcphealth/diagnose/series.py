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

Each of those is the series step of the rule it belongs to (``close_wait``, ``handshake``,
``over_time``); this module works out the facts and runs the steps in the registry's order.
Everything here is pure: samples in, findings and facts out.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence

from tcphealth.diagnose import CODES, RULES, diagnose, finding_order
from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import owned_by_fd
from tcphealth.diagnose.rule import Window
from tcphealth.diagnose.timeline import Age, ConnectionKey, HeldSince, ages_over
from tcphealth.model import Finding, Snapshot, TcpState
from tcphealth.series_facts import CounterDelta, Growth, SeriesFacts

__all__ = ["CounterDelta", "Growth", "SeriesFacts", "diagnose_series"]

# Counters whose rise during the window the series reports (name, what a rise means).
WATCHED_COUNTERS: tuple[tuple[str, str], ...] = (
    ("TcpExt.ListenOverflows", "connections dropped: an accept queue was full"),
    ("TcpExt.ListenDrops", "connection attempts dropped by listeners, for any reason"),
    ("TcpExt.TCPTimeWaitOverflow", "TIME_WAIT skipped: tcp_max_tw_buckets reached"),
    ("Tcp.RetransSegs", "segments retransmitted"),
    ("TcpExt.TCPSynRetrans", "SYNs and SYN-ACKs retransmitted"),
    ("TcpExt.TCPAbortOnTimeout", "connections aborted after too many retransmissions"),
    ("TcpExt.TCPReqQFullDoCookies", "SYNs answered with a cookie: a SYN queue was full"),
    ("TcpExt.TCPReqQFullDrop", "SYNs dropped: a SYN queue was full and cookies were off"),
    ("TcpExt.TCPAbortOnMemory", "connections aborted for lack of TCP memory"),
    ("TcpExt.TCPMemoryPressures", "times TCP entered memory pressure"),
    ("TcpExt.TCPRcvQDrop", "arriving segments dropped: no room in a receive queue"),
    ("TcpExt.TCPBacklogDrop", "arriving segments dropped: a locked socket's backlog was full"),
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


def diagnose_series(
    series: Sequence[Snapshot],
    thresholds: Thresholds | None = None,
    ages: Mapping[ConnectionKey, Age] | None = None,
    held: HeldSince | None = None,
) -> tuple[list[Finding], SeriesFacts]:
    """Findings about the latest sample of ``series`` (oldest first), corrected and extended by
    what the series shows, and the facts behind them.

    ``ages`` may come from a :class:`~tcphealth.diagnose.timeline.Tracker` that has followed
    the host for longer than ``series`` (``watch``); by default they are worked out from
    ``series`` alone. A socket counts as present through the window when it was seen in its
    state in at least as many samples in a row as the window holds. ``held`` keeps, from one
    look of ``watch`` to the next, how long conditions the window alone cannot span have lasted.
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
    if len(series) < 2:
        return diagnose(latest, effective), facts
    findings = diagnose(latest, effective, ages)
    window = Window(series, ages, facts, CODES, held)
    for rule in RULES:
        if rule.step is not None:
            findings = rule.step(window, findings, effective)
    findings.sort(key=finding_order)
    return findings, facts


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
