"""Who holds a socket nobody holds: crediting not-yet-accepted connections to their listener.

Shared by every source that knows which sockets have no owning file descriptor -- the /proc
walk (inode 0) and the text of ``ss -p`` / ``netstat -p`` (a row with no ``users:`` or ``-``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from tcphealth.model import Family, OwnerSource, Socket, TcpState

# Sockets that can sit on a listener's port with no file descriptor because the listener's
# process has not accept()ed them yet: a handshake in progress, or a finished connection (which
# may already have received the peer's FIN) still in the accept queue. Orphans (FIN_WAIT*,
# LAST_ACK, CLOSING) and TIME_WAIT also have no descriptor, but they had an owner who closed them.
UNACCEPTED_STATES = frozenset({TcpState.SYN_RECV, TcpState.ESTABLISHED, TcpState.CLOSE_WAIT})

# Keyed by namespace too: a listener is no owner of a socket in another network namespace.
_ListenerIndex = dict[tuple[Family, int | None, int | None], list[Socket]]


def credit_unaccepted_to_listeners(sockets: Sequence[Socket]) -> list[Socket]:
    """Credit every socket no process holds (``OwnerSource.NONE``) in a state that can wait in
    an accept queue to the pids of the listener on its local address and port, with
    ``OwnerSource.LISTENER``. Everything else is returned unchanged, in the same order."""
    result = list(sockets)
    credit_in_place(result)
    return result


@dataclass(frozen=True)
class Sorted:
    """What a source's own last pass over its sockets found, so that no pass over all of them
    is made again for it (the netlink decoder sets every socket's owner in one loop):
    ``listeners``, the LISTEN sockets in order; ``unaccepted``, the positions of the sockets
    :func:`credit_in_place` may credit (no owner, no descriptor, in UNACCEPTED_STATES), in
    order; ``unseen``, the sockets with a descriptor no process we read holds."""

    listeners: list[Socket]
    unaccepted: list[int]
    unseen: list[Socket]


def credit_in_place(sockets: list[Socket], found: Sorted | None = None) -> None:
    """:func:`credit_unaccepted_to_listeners`, replacing the credited sockets in ``sockets``
    itself: no second list of 300,000 sockets. With ``found`` (of exactly these sockets),
    only the sockets it names are looked at."""
    listeners = _index_listeners(sockets if found is None else found.listeners)
    if not listeners:
        return
    if found is not None:
        for index in found.unaccepted:
            sock = sockets[index]
            owners = _listener_pids(listeners, sock)
            if owners is not None:
                sockets[index] = replace(sock, pids=owners, owner_source=OwnerSource.LISTENER)
        return
    for index, sock in enumerate(sockets):
        if sock.owner_source is not OwnerSource.NONE or sock.state not in UNACCEPTED_STATES:
            continue
        if sock.inode:  # a descriptor exists, we just could not see whose
            continue
        owners = _listener_pids(listeners, sock)
        if owners is not None:
            sockets[index] = replace(sock, pids=owners, owner_source=OwnerSource.LISTENER)


def _index_listeners(sockets: Sequence[Socket]) -> _ListenerIndex:
    index: _ListenerIndex = {}
    for sock in sockets:
        if sock.state is TcpState.LISTEN:
            index.setdefault((sock.family, sock.local.port, sock.netns), []).append(sock)
    return index


def _listener_pids(index: _ListenerIndex, sock: Socket) -> tuple[int, ...] | None:
    """The pids of the listener a not-yet-accepted socket belongs to: one bound to exactly its
    local address if any, else a wildcard one; all of them where SO_REUSEPORT made several."""
    candidates = index.get((sock.family, sock.local.port, sock.netns))
    if not candidates:
        return None
    exact = [lst for lst in candidates if lst.local.address == sock.local.address]
    matches = exact or [lst for lst in candidates if lst.local.is_unspecified]
    if not matches:
        return None
    return tuple(sorted({pid for lst in matches for pid in lst.pids}))
