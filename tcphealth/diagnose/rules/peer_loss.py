"""A path that loses packets toward one peer: what this host sends it goes unacknowledged again
and again, on several connections and both when they open and when they close.

A retransmission count above zero says the last segment a socket sent was not acknowledged in
time: a SYN-ACK in SYN_RECV, a SYN in SYN_SENT, a FIN in FIN_WAIT1, CLOSING or LAST_ACK. One
such socket says little -- a client that vanished leaves one behind. One peer doing it on
several connections, in the handshake and in the close, says more: the peer is there (its SYNs
arrive, it sends its FIN), yet what this host sends back keeps getting lost, so the path between
drops packets, in one direction or both. Neither end's application is at fault.

A paste that lists the same table again and again (an ``ss -o`` loop a second apart) shows this
over its captures, which one look rarely does: the connections are counted over all of them
(each once, by its two endpoints), and the finding is made only while one of them still resends
in the last capture, so it says what the path does now, not what it once did. One look (and
each sample of ``watch``) is read the same way, over the sockets it holds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex, destination
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.shared import platform_steps, retransmits_of
from tcphealth.diagnose.wording import number
from tcphealth.model import (
    Blame,
    Endpoint,
    Evidence,
    Finding,
    Severity,
    Socket,
    Subject,
    SubjectKind,
    TcpState,
    format_address,
)

PEER_PATH_LOSING = "peer-path-losing"

# The two moments of a connection whose resends say the peer was there: it sent the SYN (or
# this host reached it before) and, later, it sent its FIN or was sent one.
_HANDSHAKE = (TcpState.SYN_SENT, TcpState.SYN_RECV)
_CLOSE = (TcpState.FIN_WAIT1, TcpState.CLOSING, TcpState.LAST_ACK)
_STATES = (*_HANDSHAKE, *_CLOSE)

_Connection = tuple[Endpoint, Endpoint]


def _resending(sockets: Iterable[Socket]) -> Iterable[Socket]:
    """Sockets in a handshake or close state that resent, toward a peer the source names by
    its address: a name, a mask or a placeholder may stand for several hosts, and this is a
    claim about one."""
    for sock in sockets:
        if sock.state in _STATES and sock.remote.name is None:
            retransmits = retransmits_of(sock)
            if retransmits is not None and retransmits > 0:
                yield sock


def _peer_of(sock: Socket) -> Endpoint:
    """The peer's address alone (an IPv4-mapped one as IPv4), for counting per peer."""
    return Endpoint(destination(sock.remote).address, None)


class _Peer:
    """What the captures show of one peer address's resending connections."""

    def __init__(self) -> None:
        self.connections: dict[_Connection, set[TcpState]] = {}
        self.latest: list[Socket] = []

    def add(self, sock: Socket) -> None:
        self.connections.setdefault((sock.local, sock.remote), set()).add(sock.state)

    @property
    def states(self) -> set[TcpState]:
        return set().union(*self.connections.values())

    @property
    def both_phases(self) -> bool:
        states = self.states
        return bool(states.intersection(_HANDSHAKE)) and bool(states.intersection(_CLOSE))


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    snapshot = index.snapshot
    latest = [sock for state in _STATES for sock in _resending(index.sockets(state))]
    if not latest:
        return []
    peers: dict[Endpoint, _Peer] = {}
    listings: Sequence[Iterable[Socket]] = (*snapshot.earlier_listings, latest)
    for listing in listings:
        for sock in _resending(listing):
            peers.setdefault(_peer_of(sock), _Peer()).add(sock)
    for sock in latest:
        peers[_peer_of(sock)].latest.append(sock)
    findings: list[Finding] = []
    for address, peer in sorted(peers.items(), key=lambda item: str(item[0].address)):
        count = len(peer.connections)
        if not peer.latest or count < thresholds.peer_loss_warning or not peer.both_phases:
            continue
        findings.append(_finding(index, address, peer, len(listings)))
    return findings


def _finding(index: SnapshotIndex, peer_at: Endpoint, peer: _Peer, captures: int) -> Finding:
    address = format_address(peer_at.address)
    count = len(peer.connections)
    by_state = Counter(state for states in peer.connections.values() for state in states)
    # The state the peer's connections resend in now: the commonest in the last capture.
    now = Counter(sock.state for sock in peer.latest)
    state = min(now, key=lambda s: (-now[s], _STATES.index(s)))
    most = max(peer.latest, key=lambda s: retransmits_of(s) or 0)
    states_text = ", ".join(
        f"{state.value} {number(by_state[state])}" for state in _STATES if by_state[state]
    )
    over = f"over the paste's {number(captures)} captures" if captures > 1 else "in this look"
    evidence = [
        Evidence("connections", count, f"toward {address} with segments resent, {over}"),
        *(
            Evidence(
                state.value.lower(), by_state[state], "of them resent in this state at some point"
            )
            for state in _STATES
            if by_state[state]
        ),
        Evidence(
            "resending_now",
            len(peer.latest),
            f"in the last capture; {most.state.value} {most.local} -> {most.remote} has resent "
            f"{retransmits_of(most)} times",
        ),
    ]
    if captures > 1:
        evidence.append(Evidence("captures", captures, "listings of the same table in the paste"))
    return Finding(
        code=PEER_PATH_LOSING,
        severity=Severity.WARNING,
        state=state,
        blame=Blame.NETWORK,
        subject=Subject(kind=SubjectKind.PEER, endpoint=address, address=peer_at),
        count=count,
        summary=(
            f"{number(count)} connections with {address} had what this host sent them go "
            f"unacknowledged and resent, {over} ({states_text}): connections with it get opened "
            "and closed, so the peer is there, but segments between the two are lost both when the "
            f"connections open and when they close -- the path to {address} drops packets"
            + (
                "; one of them still resends now."
                if len(peer.latest) == 1
                else f"; {number(len(peer.latest))} of them still resend now."
            )
        ),
        evidence=tuple(evidence),
        next_steps=platform_steps(
            index.snapshot.host.platform,
            (
                f"mtr -c 30 -r {address}   # where on the path packets are lost",
                f"ss -tno dst {address}   # resend counters of its connections now",
                "nstat -az TcpRetransSegs TcpExtTCPSynRetrans   # twice: is loss still rising?",
            ),
        ),
        unchecked=(
            "in which direction packets are lost, and where: resends show only that this "
            "host's segments went unacknowledged (a capture at both ends, or mtr, tells)",
        ),
    )


RULE = Rule(
    name="peer_loss",
    summary="one peer's connections resend in the handshake and in the close: a lossy path",
    codes=(
        Code(
            PEER_PATH_LOSING,
            "one peer's connections resend both their handshake and their close segments, "
            "across the paste's captures: the peer is there, and the path to it loses packets",
            (Severity.WARNING,),
        ),
    ),
    check=check,
)
