"""Small helpers every rule uses to name things the same way.

Numbers get thousands separators (``3,120``), processes read ``pid 812 (java)``, endpoints
bracket IPv6 (``[2001:db8::1]:443``), and ss filters are spelt so they can be pasted.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections import Counter
from collections.abc import Iterable

from tcphealth.diagnose.index import Destination, SnapshotIndex
from tcphealth.model import (
    Endpoint,
    Evidence,
    IPAddress,
    Severity,
    Subject,
    SubjectKind,
    TcpState,
)

# The diagnoses import plural from here; it is the one every layer uses.
from tcphealth.phrases import plural as plural


def number(value: int) -> str:
    return f"{value:,}"


def percent(ratio: float) -> str:
    """``83%``; never ``100%`` for a value short of it (1019 of 1024 is ``99.5%``)."""
    shown = f"{ratio:.0%}"
    if shown == "100%" and ratio < 1.0:
        return f"{ratio * 100:.1f}%"
    return shown


def sockets_text(count: int) -> str:
    return f"{number(count)} socket" if count == 1 else f"{number(count)} sockets"


def destination_text(dest: Destination) -> str:
    """``10.0.0.5:6379``, ``[2001:db8::1]:443``; the bare address when the port is ``None``."""
    address, port = dest.address, dest.port
    if dest.name is not None:
        # A host name or mask as the paste printed it: its address is only a stand-in.
        return dest.name if port is None else f"{dest.name}:{port}"
    if port is None:
        return str(address)
    if isinstance(address, ipaddress.IPv6Address):
        return f"[{address}]:{port}"
    return f"{address}:{port}"


def by_host_if_ports_vary(counts: Counter[Destination]) -> Counter[Destination]:
    """Count by address alone when no address:port repeats.

    The far side of a server's connections is the client's ephemeral port, different every
    time; listing ``10.0.0.7:40001 (1), 10.0.0.7:40002 (1)`` would hide that one client holds
    them all.
    """
    if len(counts) <= 1 or max(counts.values()) > 1:
        return counts
    # Summed per address object first (many destinations share one), then per address. A
    # pasted name (host name, mask) stands for its own host: its address is only a stand-in.
    by_object: dict[tuple[int, str | None], tuple[IPAddress, str | None, int]] = {}
    for dest, count in counts.items():
        address, name = dest.address, dest.name
        seen = by_object.get((id(address), name))
        by_object[(id(address), name)] = (
            address,
            name,
            count if seen is None else seen[2] + count,
        )
    hosts: Counter[Destination] = Counter()
    for address, name, count in by_object.values():
        hosts[Endpoint(address, None, name)] += count
    return hosts


def pids_key(pids: Iterable[int]) -> tuple[int, ...]:
    """The set of pids holding a socket, as a stable dict key (forked holders share sockets)."""
    return tuple(sorted(set(pids)))


def who(index: SnapshotIndex, pids: tuple[int, ...]) -> str:
    """``pid 812 (java)``, ``pids 812, 813 (java)``, or ``an unidentified process``."""
    if not pids:
        return "an unidentified process"
    names = sorted({name for pid in pids if (name := index.process_name(pid))})
    label = f"pid {pids[0]}" if len(pids) == 1 else "pids " + ", ".join(str(p) for p in pids)
    return f"{label} ({', '.join(names)})" if names else label


def process_subject(
    index: SnapshotIndex,
    pids: tuple[int, ...],
    kind: SubjectKind = SubjectKind.PROCESS,
    address: Endpoint | None = None,
    endpoint: str | None = None,
) -> Subject:
    """A subject about every pid of ``pids``, naming the lowest (the parent, usually, after a
    fork); ``endpoint`` is ``address`` as text unless given."""
    pid = pids[0] if pids else None
    if endpoint is None and address is not None:
        endpoint = str(address)
    return Subject(
        kind=kind,
        pid=pid,
        process=index.process_name(pid),
        endpoint=endpoint,
        pids=pids,
        address=address,
    )


def pid_evidence(pids: tuple[int, ...]) -> tuple[Evidence, ...]:
    if len(pids) <= 1:
        return ()
    shown = ", ".join(str(pid) for pid in pids)
    return (Evidence("pids", shown, "these processes share the same sockets (forked)"),)


def top_destinations(
    counts: Counter[Destination], name: str = "top_destination", limit: int = 3
) -> tuple[Evidence, ...]:
    """The ``limit`` most frequent destinations, most frequent first, ties by text."""
    ranked = _ranked(by_host_if_ports_vary(counts), limit)
    return tuple(
        Evidence(name, destination_text(dest), sockets_text(count)) for dest, count in ranked
    )


def _ranked(counts: Counter[Destination], limit: int) -> list[tuple[Destination, int]]:
    """The ``limit`` most frequent, ties by text. Only those with a count among the ``limit``
    largest can be in it, so only those are written out as text to be sorted: a server's
    18,000 clients with one connection each are not formatted 18,000 times."""
    if len(counts) > limit:
        least = heapq.nlargest(limit, counts.values())[-1]
        candidates = [item for item in counts.items() if item[1] >= least]
    else:
        candidates = list(counts.items())
    if len(candidates) <= 1:
        return candidates
    # A server's clients tied at one count share a few addresses: each address is written
    # out once here (ipaddress formats slowly), not once per client port.
    written: dict[int, str] = {}

    def text(dest: Destination) -> str:
        address, port = dest.address, dest.port
        if dest.name is not None or port is None:
            return destination_text(dest)
        shown = written.get(id(address))
        if shown is None:
            shown = written[id(address)] = (
                f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
            )
        return f"{shown}:{port}"

    candidates.sort(key=lambda item: (-item[1], text(item[0])))
    return candidates[:limit]


def named_destinations(counts: Counter[Destination], limit: int = 3) -> Counter[Destination]:
    """Only the ``limit`` destinations :func:`top_destinations` and :func:`most_common_text`
    name (no fold by host is needed: some destination of ``counts`` repeats), ranked once:
    each of them would otherwise write out every destination tied at the last count."""
    return Counter(dict(_ranked(counts, limit)))


def share_text(counts: Counter[Destination], total: int, side: str = "", limit: int = 3) -> str:
    """``mostly to 10.0.0.5:6379 (2,900), 10.0.0.6:6379 (220)`` (``side`` "to") for a summary
    sentence: the destinations :func:`most_common_text` lists, after ``all`` where they hold
    every one of the ``total`` sockets, else ``mostly`` ("mostly to X (30)" of 30 sockets
    would say there were others). Ranked once for both."""
    ranked = _ranked(by_host_if_ports_vary(counts), limit)
    word = "all" if sum(count for _, count in ranked) >= total else "mostly"
    return " ".join(part for part in (word, side, _listed(ranked)) if part)


def most_common_text(counts: Counter[Destination], limit: int = 3) -> str:
    """``10.0.0.5:6379 (2,900), 10.0.0.6:6379 (220)`` for a summary sentence."""
    return _listed(_ranked(by_host_if_ports_vary(counts), limit))


def _listed(ranked: list[tuple[Destination, int]]) -> str:
    return ", ".join(f"{destination_text(dest)} ({number(count)})" for dest, count in ranked)


def ss_peer_filter(address: IPAddress, port: int | None) -> str:
    """An ss filter matching one remote address (and port): ``dst 10.0.0.5 '( dport = :80 )'``."""
    text = f"dst {address}"
    if port is not None:
        text += f" '( dport = :{port} )'"
    return text


def level(count: float, warning: float, critical: float) -> Severity | None:
    """CRITICAL at or above ``critical``, WARNING at or above ``warning``, else nothing."""
    if count >= critical:
        return Severity.CRITICAL
    if count >= warning:
        return Severity.WARNING
    return None


def attribution_gaps(index: SnapshotIndex, state: TcpState) -> tuple[str, ...]:
    """What the snapshot could not tell about which process holds the sockets in ``state``.

    Only unseen sockets of that state count: an ownerless listener says nothing about who
    holds a CLOSE_WAIT connection. Unreadable processes always do, since any of them may hold
    sockets of any state."""
    attribution = index.snapshot.attribution
    if not attribution.attempted:
        return ("which processes hold these sockets: the source lists no owners",)
    gaps: list[str] = []
    if attribution.processes_forbidden:
        gaps.append(
            f"the descriptors of {plural(attribution.processes_forbidden, 'process', 'processes')}"
            " were not readable (run as root to see every owner)"
        )
    unseen = index.unseen_in(state)
    if unseen:
        gaps.append(
            f"{plural(unseen, f'{state.value} socket')} with a descriptor had no owner we could see"
        )
    return tuple(gaps)
