"""CLOSE_WAIT that a client's new connection can run into (server side).

A CLOSE_WAIT socket keeps its 4-tuple (this host's address and port, the client's address and
port) for as long as the application holds it; CLOSE_WAIT has no timer. The client closed long
ago and forgot the port, so when it picks that port again for a new connection to the same
service, its SYN lands on the stale socket. The kernel answers with a challenge ACK
(TcpExt.TCPChallengeACK); the client resets and its retried SYN gets through a moment later.
When the challenge ACK or the RST is lost (a firewall that drops "out of state" packets, a
middlebox), the client's connect() times out instead.

Two findings:

* the risk: this host holds CLOSE_WAIT toward one client address, on one service, on so many of
  that client's likely ephemeral ports that its next connections are likely to pick one. The
  client's port range is not known here: Linux's default (32768-60999) is assumed and said so.
  The chance is the birthday-style one of a uniform pick, an estimate: Linux picks ports by a
  hash of the destination and a counter, which is not uniform but does not avoid ports it has
  forgotten.
* the collision seen: a connection being opened (SYN_SENT here, or SYN_RECV) on the 4-tuple of
  a CLOSE_WAIT, as happens when both ends are on this host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.wording import number, percent, pids_key, plural, process_subject, who
from tcphealth.model import (
    Blame,
    Endpoint,
    Evidence,
    Finding,
    IPAddress,
    Severity,
    Socket,
    SubjectKind,
    TcpState,
)

COLLISION_RISK = "close-wait-collision-risk"
COLLISION = "close-wait-collision"

# The client's ephemeral range is the client's setting, not this host's: assume Linux's default.
ASSUMED_RANGE = (32768, 60999)
# Share of the assumed range held in CLOSE_WAIT from which the next connections are likely to
# collide: at 1% a collision is more likely than not within 69 new connections, at 10% within 7.
WARNING_SHARE = 0.01
CRITICAL_SHARE = 0.10

_CHALLENGE_ACK = "TcpExt.TCPChallengeACK"

# Where the client connects to (this host's endpoint) and from which address.
_Pair = tuple[Endpoint, IPAddress]

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    import numpy.typing as npt

    from tcphealth.columnar import SocketTable

_CLOSE_WAIT_CODE = 8  # the kernel's TCP_CLOSE_WAIT


def range_size(port_range: tuple[int, int] = ASSUMED_RANGE) -> int:
    low, high = port_range
    return high - low + 1


def collision_chance(held: int, size: int, connections: int = 1) -> float:
    """The chance that at least one of ``connections`` new connections, each picking one of
    ``size`` ports uniformly, lands on one of the ``held`` ports."""
    if held <= 0:
        return 0.0
    if held >= size:
        return 1.0
    return 1.0 - (1.0 - held / size) ** connections


def connections_until_likely(held: int, size: int) -> int | None:
    """How many new connections make a collision more likely than not (None: never)."""
    if held <= 0:
        return None
    if held >= size:
        return 1
    return math.ceil(math.log(0.5) / math.log(1.0 - held / size))


@dataclass
class _Group:
    ports: set[int] = field(default_factory=set)
    outside: int = 0  # remote ports outside the assumed range
    pids: dict[tuple[int, ...], int] = field(default_factory=dict)


def _challenge_acks(index: SnapshotIndex) -> tuple[Evidence, ...]:
    value = index.snapshot.counters.get(_CHALLENGE_ACK)
    if value is None:
        return ()
    return (
        Evidence(
            "TCPChallengeACK",
            value,
            "since boot: challenge ACKs sent, among them the answers to SYNs that hit an "
            "existing connection",
        ),
    )


def _unknown_challenge(index: SnapshotIndex) -> tuple[str, ...]:
    if _CHALLENGE_ACK in index.snapshot.counters:
        return ()
    return (
        "whether SYNs already hit these sockets: TcpExt.TCPChallengeACK is not in the source "
        "(nstat -az TcpExtTCPChallengeACK)",
    )


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    del thresholds  # the shares above are properties of the port range, not knobs
    close_wait = list(index.sockets(TcpState.CLOSE_WAIT))
    if not close_wait:
        return []
    findings = _risk_findings(index, close_wait)
    findings.extend(_collision_findings(index, close_wait))
    return findings


def check_table(index: SnapshotIndex, thresholds: Thresholds, table: SocketTable) -> list[Finding]:
    """:func:`check` over the CLOSE_WAIT rows of ``table``: the (service, client address)
    groups and their distinct client ports counted over the columns, holders and endpoints
    made only for the groups over the warning share; objects only for the CLOSE_WAIT whose
    4-tuple a handshake here opens on. The index must have been built from ``table`` with
    CLOSE_WAIT lazy, else the objects are read as by :func:`check`."""
    import numpy as np

    from tcphealth.columnar import AddressTable, lexsorted_runs

    del thresholds  # as in check
    if not index.reads_table(table, TcpState.CLOSE_WAIT):
        return check(index, Thresholds())
    columns = table.columns
    rows = np.flatnonzero(columns.state == _CLOSE_WAIT_CODE)
    if not len(rows):
        return []
    # Each row's group: the service end (family, local address and port) and the client's
    # address, numbered in one lexsort.
    keys: list[npt.NDArray[np.generic]] = [
        columns.family[rows],
        columns.src_high[rows],
        columns.src_low[rows],
        columns.sport[rows],
        columns.dst_high[rows],
        columns.dst_low[rows],
    ]
    order, starts = lexsorted_runs(keys[::-1])
    group = np.empty(len(rows), dtype=np.intp)
    group[order] = np.cumsum(starts) - 1
    groups = int(group.max()) + 1
    low, high = ASSUMED_RANGE
    ports = columns.dport[rows]
    inside = (ports >= low) & (ports <= high)
    # Distinct client ports per group: each (group, port) once.
    pairs = np.unique(group[inside].astype(np.uint64) << np.uint64(32) | ports[inside])
    held = np.bincount((pairs >> np.uint64(32)).astype(np.intp), minlength=groups)
    outside = np.bincount(group[~inside], minlength=groups)
    size = range_size()
    addresses = AddressTable()
    found: list[tuple[Endpoint, IPAddress, _Group]] = []
    for at in np.flatnonzero(held / size >= WARNING_SHARE).tolist():
        members = np.flatnonzero(group == at)
        first = int(rows[members[0]])
        kind = int(columns.family[first])
        service = Endpoint(
            addresses.get(kind, int(columns.src_high[first]), int(columns.src_low[first])),
            int(columns.sport[first]),
        )
        client = addresses.get(kind, int(columns.dst_high[first]), int(columns.dst_low[first]))
        part = _Group(outside=int(outside[at]))
        counted = members[inside[members]]
        part.ports = set(ports[counted].tolist())
        numbers, counts = np.unique(table.holders[rows[counted]], return_counts=True)
        for number_at, count in zip(numbers.tolist(), counts.tolist(), strict=True):
            holder = pids_key(table.groups[number_at])
            part.pids[holder] = part.pids.get(holder, 0) + count
        found.append((service, client, part))
    findings = [
        _risk_finding(index, service, client, part, _severity(len(part.ports) / size))
        for service, client, part in sorted(
            found, key=lambda item: (-len(item[2].ports), str(item[0]), str(item[1]))
        )
    ]
    syn_sent, syn_recv = index.sockets(TcpState.SYN_SENT), index.sockets(TcpState.SYN_RECV)
    if syn_sent or syn_recv:
        # The CLOSE_WAIT a handshake may open on: those on its ports, made objects.
        local_ports = {s.remote.port for s in syn_sent} | {s.local.port for s in syn_recv}
        remote_ports = {s.local.port for s in syn_sent} | {s.remote.port for s in syn_recv}
        maybe = rows[
            np.isin(columns.sport[rows], [p for p in local_ports if p is not None])
            & np.isin(ports, [p for p in remote_ports if p is not None])
        ]
        findings.extend(_collision_findings(index, index.objects_at(maybe)))
    return findings


def _severity(share: float) -> Severity:
    return Severity.CRITICAL if share >= CRITICAL_SHARE else Severity.WARNING


def _risk_groups(close_wait: list[Socket]) -> dict[_Pair, _Group]:
    """CLOSE_WAIT by (service endpoint, client address): the client ports in the assumed range
    each group holds, how many are outside it, and the sockets per holder."""
    low, high = ASSUMED_RANGE
    # Grouped by the identities of the address objects (with the local port and name) first
    # -- sources share addresses; hashing one is slow -- and the pid tuples' normal form worked
    # out once per tuple object; then folded by value, once per distinct key.
    by_ids: dict[tuple[int, int | None, str | None, int], tuple[Endpoint, IPAddress, _Group]] = {}
    keys: dict[int, tuple[int, ...]] = {}
    for sock in close_wait:
        local, remote = sock.local, sock.remote
        port = remote.port
        if port is None or local.port is None:
            continue
        address = remote.address
        ids = (id(local.address), local.port, local.name, id(address))
        entry = by_ids.get(ids)
        if entry is None:
            entry = by_ids[ids] = (local, address, _Group())
        group = entry[2]
        if low <= port <= high:
            group.ports.add(port)
            pids = sock.pids
            key = keys.get(id(pids))
            if key is None:
                key = keys[id(pids)] = pids_key(pids)
            group.pids[key] = group.pids.get(key, 0) + 1
        else:
            group.outside += 1
    groups: dict[_Pair, _Group] = {}
    for local, address, part in by_ids.values():
        group = groups.setdefault((local, address), part)
        if group is not part:
            group.ports |= part.ports
            group.outside += part.outside
            for key, count in part.pids.items():
                group.pids[key] = group.pids.get(key, 0) + count
    return groups


def _risk_findings(index: SnapshotIndex, close_wait: list[Socket]) -> list[Finding]:
    groups = _risk_groups(close_wait)
    size = range_size()
    findings: list[Finding] = []
    for (service, client), group in sorted(
        groups.items(), key=lambda item: (-len(item[1].ports), str(item[0][0]), str(item[0][1]))
    ):
        share = len(group.ports) / size
        if share < WARNING_SHARE:
            continue
        findings.append(_risk_finding(index, service, client, group, _severity(share)))
    return findings


def _risk_finding(
    index: SnapshotIndex,
    service: Endpoint,
    client: IPAddress,
    group: _Group,
    severity: Severity,
) -> Finding:
    size = range_size()
    held = len(group.ports)
    share = held / size
    chance = collision_chance(held, size)
    likely = connections_until_likely(held, size)
    pids = max(group.pids, key=lambda key: (group.pids[key], key))
    holder = who(index, pids) if pids else "A process the source does not name"
    low, high = ASSUMED_RANGE
    summary = (
        f"{holder} holds {number(held)} connections from {client} to {service} in CLOSE_WAIT, "
        f"on {percent(share)} of the client's likely ephemeral ports "
        f"({low}-{high} assumed): each new connection from {client} to {service} has a "
        f"{_chance_text(chance)} chance to reuse one of these 4-tuples, more likely than not "
        f"within {plural(likely or 0, 'connection')}. Its SYN then meets the stale socket "
        "and gets a challenge ACK; where that or the client's RST is lost (a firewall), "
        "connect() times out."
    )
    evidence: list[Evidence] = [
        Evidence("close_wait", held, f"from {client} to {service}, on distinct client ports"),
        Evidence("share_of_range", round(share, 4), f"of the {number(size)} ports {low}-{high}"),
        Evidence("chance_per_connection", round(chance, 4), "uniform pick, an estimate"),
        Evidence("connections_until_likely", likely, "a collision more likely than not"),
    ]
    if group.outside:
        evidence.append(
            Evidence("outside_range", group.outside, "CLOSE_WAIT from client ports outside it")
        )
    evidence.extend(_challenge_acks(index))
    return Finding(
        code=COLLISION_RISK,
        severity=severity,
        state=TcpState.CLOSE_WAIT,
        blame=Blame.LOCAL_APPLICATION,
        subject=process_subject(
            index,
            pids,
            kind=SubjectKind.PEER,
            address=Endpoint(client, None),
            endpoint=str(client),
        ),
        count=held,
        summary=summary,
        evidence=tuple(evidence),
        next_steps=(
            f"ss -tn state close-wait '( sport = :{service.port} and dst {client} )'",
            "nstat -az TcpExtTCPChallengeACK   # rising while clients connect: SYNs hitting "
            "these sockets",
            "Make the application close its connections once the peer has closed (a read "
            "returning 0): the close-wait findings say why it does not.",
            f"On the client ({client}): sysctl net.ipv4.ip_local_port_range, to replace the "
            "assumed range",
        ),
        unchecked=(
            f"the client's ephemeral port range: Linux's default {low}-{high} is assumed",
            "whether anything between the client and this host drops the challenge ACK or the "
            "RST (then connect() times out instead of retrying)",
            *_unknown_challenge(index),
        ),
    )


def _chance_text(chance: float) -> str:
    return percent(chance) if chance >= 0.01 else f"{chance * 100:.2f}%"


def _collision_findings(index: SnapshotIndex, close_wait: Sequence[Socket]) -> list[Finding]:
    """The handshakes opening on the 4-tuple of a CLOSE_WAIT among ``close_wait`` (every
    CLOSE_WAIT, or at least each one whose 4-tuple a handshake here could have)."""
    if not index.sockets(TcpState.SYN_SENT) and not index.sockets(TcpState.SYN_RECV):
        return []  # no handshake to meet a stale tuple: no map of every CLOSE_WAIT to build
    tuples = {(sock.local, sock.remote): sock for sock in close_wait}
    hits: list[tuple[Socket, Socket]] = []
    for state in (TcpState.SYN_SENT, TcpState.SYN_RECV):
        for sock in index.sockets(state):
            # SYN_SENT here opens toward this host: the CLOSE_WAIT has the mirrored tuple.
            # SYN_RECV would be the same tuple as the CLOSE_WAIT.
            key = (
                (sock.remote, sock.local)
                if state is TcpState.SYN_SENT
                else (sock.local, sock.remote)
            )
            stale = tuples.get(key)
            if stale is not None:
                hits.append((sock, stale))
    if not hits:
        return []
    opening, stale = hits[0]
    pids = pids_key(stale.pids)
    holder = who(index, pids) if pids else "a process the source does not name"
    summary = (
        f"A new connection is being opened on the 4-tuple of a connection still in CLOSE_WAIT "
        f"({stale.local} <- {stale.remote}, held by {holder})"
        + (f", and {number(len(hits) - 1)} more like it" if len(hits) > 1 else "")
        + ": the client reused a port this host never released. Its SYN gets a challenge ACK "
        "instead of a SYN-ACK; it connects only once its RST clears the stale socket, and not "
        "at all where the challenge ACK or the RST is lost."
    )
    return [
        Finding(
            code=COLLISION,
            severity=Severity.WARNING,
            state=TcpState.CLOSE_WAIT,
            blame=Blame.LOCAL_APPLICATION,
            subject=process_subject(index, pids),
            count=len(hits),
            summary=summary,
            evidence=(
                Evidence("collisions", len(hits), "connections opening on a CLOSE_WAIT 4-tuple"),
                Evidence(
                    "opening",
                    f"{opening.state.value} {opening.local} -> {opening.remote}",
                    "the new connection",
                ),
                *_challenge_acks(index),
            ),
            next_steps=(
                f"ss -tnpo state close-wait '( sport = :{stale.local.port} )'",
                "nstat -az TcpExtTCPChallengeACK   # rises with each SYN that hits it",
                "Make the application close its connections once the peer has closed "
                "(`ss -K` as root clears this one only).",
            ),
            unchecked=_unknown_challenge(index),
        )
    ]


RULE = Rule(
    name="port_collision",
    summary="CLOSE_WAIT on a client's ports that its new connections reuse (server side)",
    codes=(
        Code(
            COLLISION_RISK,
            "CLOSE_WAIT holds so many of one client's ephemeral ports that its new "
            "connections are likely to collide",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            COLLISION,
            "a new connection is being opened on the 4-tuple of a CLOSE_WAIT",
            (Severity.WARNING,),
        ),
    ),
    check=check,
    check_table=check_table,
)
