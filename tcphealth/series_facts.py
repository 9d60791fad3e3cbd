"""What a series of samples showed besides findings, as the report carries it.

It sits beside the model rather than in ``diagnose.series`` so that the report and the renderers,
which read these facts, need nothing from the diagnosis to name their type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tcphealth.diagnose.timeline import Age, ConnectionKey
from tcphealth.model import TcpState


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


def combine(parts: Sequence[SeriesFacts]) -> SeriesFacts:
    """The facts of a host from those of its network namespaces, each diagnosed over its own
    part of the samples: counts per state added up sample by sample (by the time it was taken),
    each counter's rise added up (every namespace has its own TCP counters, so the host's rise
    is their sum), every process's growth and every socket's age kept. The window is the
    widest one."""
    if not parts:
        raise ValueError("no series facts to combine")
    if len(parts) == 1:
        return parts[0]
    history: dict[float, Counter[TcpState]] = {}
    for part in parts:
        for taken_at, counts in part.state_history:
            history.setdefault(taken_at, Counter()).update(counts)
    rises: dict[str, CounterDelta] = {}
    for part in parts:
        for delta in part.counter_deltas:
            known = rises.get(delta.name)
            rises[delta.name] = (
                delta
                if known is None
                else CounterDelta(
                    delta.name,
                    known.delta + delta.delta,
                    known.per_second + delta.per_second,
                    known.meaning,
                )
            )
    ages: dict[ConnectionKey, Age] = {}
    for part in parts:
        ages.update(part.ages)
    return SeriesFacts(
        samples=max(part.samples for part in parts),
        started_at=min(part.started_at for part in parts),
        ended_at=max(part.ended_at for part in parts),
        state_history=tuple((taken_at, dict(history[taken_at])) for taken_at in sorted(history)),
        counter_deltas=tuple(rises.values()),
        growth=tuple(growth for part in parts for growth in part.growth),
        ages=ages,
    )
