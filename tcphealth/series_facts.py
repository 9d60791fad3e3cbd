"""What a series of samples showed besides findings, as the report carries it.

It sits beside the model rather than in ``diagnose.series`` so that the report and the renderers,
which read these facts, need nothing from the diagnosis to name their type.
"""

from __future__ import annotations

from collections.abc import Mapping
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
