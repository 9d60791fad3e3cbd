"""Following connections from one sample to the next, and how long each has been in its state.

One snapshot cannot tell a connection that *stays* in CLOSE_WAIT from one that passes through
it. A series can: the same connection is recognised in every sample it appears in, and its
age in its current state is the time since the first sample that saw it there.

Which socket is which: the socket cookie where the source gives one (netlink; unique for the
socket's life), else the inode with both endpoints (/proc, where the inode is not 0), else the
endpoints alone (pasted text; a new connection that reuses the same four-tuple in the same
state is then taken for the old one).

The kernel also gives a floor on the age from a single sample. ESTABLISHED, CLOSE_WAIT and
FIN_WAIT2 are each entered when a segment carrying an ACK arrives (the end of the handshake,
the peer's FIN, the ACK of our FIN), and every later ACK only moves the "last ACK received"
time forward, so tcp_info's time since the last ACK can never exceed the time since the socket
entered its state. Measured on loopback: a CLOSE_WAIT entered 2.2 s earlier reported
``last_ack_recv`` 2,164 ms. Other fields (time since data was received) start at the
connection's setup, not at the state's entry, so they are not used here.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from tcphealth.model import Snapshot, Socket, TcpState

ConnectionKey = Hashable

# States entered on an arriving ACK: time since the last ACK is a floor on the age in them.
ENTERED_ON_ACK = frozenset({TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.FIN_WAIT2})


def connection_key(sock: Socket) -> ConnectionKey:
    """What recognises ``sock`` in another sample of the same host and source."""
    if sock.cookie is not None:
        return ("cookie", sock.cookie)
    if sock.inode:
        return ("inode", sock.inode, sock.local, sock.remote)
    return ("endpoints", sock.local, sock.remote)


def kernel_age_floor(sock: Socket) -> float | None:
    """Seconds the socket has been in its state at least, from tcp_info alone; None where the
    kernel gives no such floor for this state or source."""
    info = sock.tcp_info
    if info is None or info.last_ack_recv_ms is None or sock.state not in ENTERED_ON_ACK:
        return None
    return info.last_ack_recv_ms / 1000


@dataclass(frozen=True)
class Age:
    """How long one socket has been in its current state.

    ``first_seen`` is the time of the first sample that saw it in this state and
    ``observed_seconds`` the time from there to the latest sample (0 in the first sample it
    appears in); ``samples`` counts the samples in a row that saw it so. ``at_least_seconds`` is
    the larger of the observed age and the kernel's floor (:func:`kernel_age_floor`).
    """

    first_seen: float
    observed_seconds: float
    samples: int
    at_least_seconds: float


@dataclass(frozen=True)
class _Sighting:
    state: TcpState
    first_seen: float
    samples: int


class Tracker:
    """Feeds on samples one at a time, oldest first, and knows each current socket's age.

    Memory is one small record per socket in the latest sample: a socket that has gone is
    forgotten, so ``watch`` can run for days on a busy host.
    """

    def __init__(self) -> None:
        self._seen: dict[ConnectionKey, _Sighting] = {}
        self.samples = 0

    def observe(self, snapshot: Snapshot) -> dict[ConnectionKey, Age]:
        """Take in the next sample; the age of each of its sockets, by :func:`connection_key`."""
        now = snapshot.host.taken_at
        seen: dict[ConnectionKey, _Sighting] = {}
        ages: dict[ConnectionKey, Age] = {}
        previous = self._seen
        for sock in snapshot.sockets:
            key = connection_key(sock)
            before = previous.get(key)
            if before is not None and before.state is sock.state:
                sighting = _Sighting(sock.state, before.first_seen, before.samples + 1)
            else:
                sighting = _Sighting(sock.state, now, 1)
            seen[key] = sighting
            observed = max(0.0, now - sighting.first_seen)
            floor = kernel_age_floor(sock)
            ages[key] = Age(
                first_seen=sighting.first_seen,
                observed_seconds=observed,
                samples=sighting.samples,
                at_least_seconds=observed if floor is None else max(observed, floor),
            )
        self._seen = seen
        self.samples += 1
        return ages


def ages_over(series: Sequence[Snapshot]) -> dict[ConnectionKey, Age]:
    """The ages of the sockets of the last sample of ``series`` (oldest first)."""
    tracker = Tracker()
    ages: dict[ConnectionKey, Age] = {}
    for snapshot in series:
        ages = tracker.observe(snapshot)
    return ages


class HeldSince:
    """Since when each connection has shown a condition without a break, kept from one look
    of ``watch`` to the next.

    A rule's step sees only the window of the last few samples, so a stretch it measures
    cannot grow past the window's span: with ``--interval 15`` and a window of 5 that span sits
    at 60 s, and a claim resting on 60 s came and went with a few milliseconds of timing.
    This keeps, per condition and connection, where the unbroken stretch began, so the
    stretch grows for as long as the condition lasts, as the module says a series only adds
    time. An entry is used only when the look just before this one refreshed it: one not
    seen there (the connection gone, the condition broken, no finding asking) starts again.
    Memory is one entry per connection currently in a condition a finding asked about.
    """

    def __init__(self) -> None:
        # (condition, connection) -> (start of the unbroken stretch, time of the last look
        # that saw it)
        self._since: dict[tuple[str, ConnectionKey], tuple[float, float]] = {}

    def extend(
        self,
        condition: str,
        since: dict[ConnectionKey, float],
        dropped: Sequence[ConnectionKey],
        previous_at: float | None,
        latest_at: float,
    ) -> None:
        """Move each start in ``since`` (connections showing ``condition`` at ``latest_at``,
        with the start the window shows) back to the one remembered, where the look at
        ``previous_at`` saw the stretch unbroken too; remember the result, and forget the
        ``dropped`` connections (which do not show it now)."""
        memory = self._since
        for key in dropped:
            memory.pop((condition, key), None)
        for key, start in since.items():
            remembered = memory.get((condition, key))
            if remembered is not None and previous_at is not None:
                began, seen_at = remembered
                # Refreshed by the previous look, or by another finding of this look.
                if seen_at in (previous_at, latest_at):
                    start = min(start, began)
                    since[key] = start
            memory[(condition, key)] = (start, latest_at)

    def forget_before(self, taken_at: float) -> None:
        """Drop what no look since ``taken_at`` refreshed."""
        self._since = {entry: value for entry, value in self._since.items() if value[1] >= taken_at}
