"""How long a condition has lasted, for the rules whose words would claim it persists.

"Peers that never close", "it stopped reading", "the window stays closed" are claims about
time. One look shows a moment: a FIN_WAIT2 whose peer closes a second later, a receive queue a
busy reader drains next, a window that reopens. So a rule says such a thing only when the
condition has lasted at least ``Thresholds.stuck_seconds``: by the kernel's own floor in one
sample (tcp_info's times since the last ACK or data), or by a series that saw the same
connection in that condition in every sample of a long enough stretch. Shorter, the finding
says what the sample shows, and names the commands that can tell (``--samples``, ``watch``).

A series only ever adds time: the stretch of samples grows with ``watch``, the kernel floor
grows with the socket, so a claim once made is not taken back while the sockets stay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.rule import Window
from tcphealth.diagnose.timeline import ConnectionKey, connection_key, kernel_age_floor
from tcphealth.model import Evidence, Socket


def oldest(seconds: Iterable[float | None]) -> float | None:
    """The largest of the known ``seconds``; None when none is known."""
    return max((value for value in seconds if value is not None), default=None)


def has_lasted(seconds: float | None, thresholds: Thresholds) -> bool:
    """Whether a condition known to have lasted ``seconds`` (None: not known) is past what a
    passing moment explains."""
    return seconds is not None and seconds >= thresholds.stuck_seconds


def cannot_tell_yet(question: str, what: str, seconds: float | None, thresholds: Thresholds) -> str:
    """The unchecked item of a finding too young for its claim: ``question`` (which starts
    the item, so a series can find and drop it), how long ``what`` is known to have lasted,
    and the commands that would tell."""
    limit = f"{thresholds.stuck_seconds:g} s"
    age = (
        f"how long {what} has lasted is not known"
        if seconds is None
        else f"{what} has lasted at least {seconds:.1f} s, under {limit}"
    )
    return (
        f"{question}: {age}, so follow them for longer than {limit} (tcphealth check --samples "
        f"4 --interval {max(1, round(thresholds.stuck_seconds / 3)):g}, or tcphealth watch)"
    )


def held_across(
    window: Window, members: Iterable[Socket], holds: Callable[[Socket], bool], condition: str
) -> dict[ConnectionKey, float]:
    """For each of ``members`` (sockets of the latest sample), how long the samples show
    ``holds`` true of it without a break up to the latest: the time from the first sample of
    that unbroken stretch to the latest (0 when only the latest shows it). Under ``watch``
    the stretch reaches back past the window, as far as the looks before saw ``condition``
    (a name for ``holds``) unbroken."""
    wanted = {connection_key(sock): sock for sock in members}
    latest = window.latest.host.taken_at
    since: dict[ConnectionKey, float] = {key: latest for key, sock in wanted.items() if holds(sock)}
    # Walk back from the sample before the latest; a connection drops out at its first break.
    open_keys = set(since)
    for snapshot in reversed(window.series[:-1]):
        if not open_keys:
            break
        seen = {
            key: sock
            for sock in snapshot.sockets
            if (key := connection_key(sock)) in open_keys and sock.state is wanted[key].state
        }
        for key in list(open_keys):
            sock = seen.get(key)
            if sock is not None and holds(sock):
                since[key] = snapshot.host.taken_at
            else:
                open_keys.discard(key)
    if window.held is not None:
        previous = window.series[-2].host.taken_at if len(window.series) > 1 else None
        dropped = [key for key in wanted if key not in since]
        window.held.extend(condition, since, dropped, previous, latest)
    return {key: max(0.0, latest - first) for key, first in since.items()}


# --- states no timer ends: how many of a few sockets their age decides ---------------------------
#
# CLOSE_WAIT ends only when the application closes, and FIN_WAIT2 held by a process only when
# the peer closes (KERNEL.md): neither has a timer. A few such sockets are normal for a moment
# and a leak if they stay, so below the count that warns, their age is the fact that decides.
# tcp_info's time since the last ACK is the only age one look gives: small, the connection
# entered its state or carried traffic a moment ago, so it is not forgotten (an application
# still writing to a half-closed peer keeps it small too). No floor at all -- a paste, a /proc
# copy -- leaves the age unknown; a series that saw it long enough in its state shows it lasted.


@dataclass(frozen=True)
class AgeSplit:
    """Some sockets of one holder in a state no timer ends, by what their age says: known to
    have lasted at least the limit, not known at all, or young (active within the limit)."""

    lasting: int
    unknown: int
    young: int
    oldest: float | None  # the longest any of the lasting ones has been so, at least

    @property
    def undecided(self) -> int:
        """The sockets a look cannot pass as a moment: unknown or lasting."""
        return self.lasting + self.unknown


def age_evidence(
    split: AgeSplit,
    state: str,
    limit: float,
    *,
    young: str | None,
    unknown: str | None = None,
) -> list[Evidence]:
    """What ``split`` of sockets in ``state`` says as evidence: how many of unknown age (the
    reason ``unknown``, by default that the input gives no time), how many lasted ``limit``
    seconds and the oldest, and -- where ``young`` says what their recent activity means --
    how many were active within the limit."""
    evidence: list[Evidence] = []
    if split.unknown:
        why = unknown or f"no time in {state} in the input (no tcp_info, no earlier timed sample)"
        evidence.append(Evidence("age_unknown", split.unknown, why))
    if split.lasting:
        evidence.append(Evidence("lasting", split.lasting, f"in {state} at least {limit:g} s"))
    if split.oldest is not None:
        evidence.append(
            Evidence("oldest_at_least_s", round(split.oldest, 1), f"in {state} at least")
        )
    if young is not None and split.young:
        evidence.append(Evidence("active_recently", split.young, young))
    return evidence


def split_by_age(
    sockets: Iterable[Socket],
    limit: float,
    observed: Callable[[Socket], float | None] | None = None,
) -> AgeSplit:
    """``sockets`` split by age against ``limit`` seconds: the kernel's floor where it gives
    one (under the limit: young), else ``observed`` (a series' time in the state, a floor that
    tells only once it reaches the limit)."""
    lasting = unknown = young = 0
    longest: float | None = None
    for sock in sockets:
        floor = kernel_age_floor(sock)
        # The kernel's floor, where it gives one, is the time since the connection was last
        # active; a series' observed time is used only where there is none.
        age = floor if floor is not None or observed is None else observed(sock)
        if age is not None and age >= limit:
            lasting += 1
            longest = age if longest is None else max(longest, age)
        elif floor is not None:
            young += 1
        else:
            unknown += 1
    return AgeSplit(lasting, unknown, young, longest)
