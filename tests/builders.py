"""Build snapshots in test code, in a line or two each.

Endpoints are written as text, the way ss prints them::

    snapshot(
        listener("[::]:30720", queued=129, backlog=128, pids=(1448,)),
        *many(100, lambda i: sock("CLOSE-WAIT", "::ffff:172.1.57.200:30720",
                                  f"::ffff:172.31.3.170:{40000 + i}", recv_queue=1, inode=0)),
        processes=[process(1448, "kube-proxy")],
        sysctls=Sysctls(somaxconn=128),
    )

Rules of thumb the helpers follow, so tests stay honest about what a source knows:

* a socket given ``pids`` is owned through a descriptor (``OwnerSource.FD``) unless ``owner``
  says otherwise; without pids its owner is ``UNKNOWN``;
* every field not given stays ``None`` (not known), as the model's convention asks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tcphealth.model import (
    Attribution,
    Endpoint,
    Family,
    HostInfo,
    OwnerSource,
    Process,
    Snapshot,
    Socket,
    Sysctls,
    TcpState,
    parse_state,
)


def endpoint(text: str) -> Endpoint:
    """``10.0.0.1:80``, ``[2001:db8::1]:443``, ``::ffff:10.0.0.1:80``, ``*:80``, ``0.0.0.0:*``.

    ``*`` as the address is the IPv4 wildcard; ``*`` as the port is an unknown port.
    """
    host, _, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "*":
        host = "0.0.0.0"
    port = None if port_text == "*" else int(port_text)
    return Endpoint(ipaddress.ip_address(host), port)


def state_of(state: TcpState | str) -> TcpState:
    if isinstance(state, TcpState):
        return state
    parsed = parse_state(state)
    if parsed is None:
        raise ValueError(f"not a state: {state!r}")
    return parsed


def sock(
    state: TcpState | str,
    local: str,
    remote: str | None = None,
    *,
    pids: Iterable[int] = (),
    owner: OwnerSource | None = None,
    **fields: Any,
) -> Socket:
    """One socket. ``fields`` are any other :class:`Socket` fields (recv_queue, timer, inode…)."""
    local_endpoint = endpoint(local)
    if remote is None:
        # No peer (a listener): the wildcard of the local address's family.
        remote = "[::]:*" if local_endpoint.address.version == 6 else "0.0.0.0:*"
    remote_endpoint = endpoint(remote)
    pid_tuple = tuple(pids)
    if owner is None:
        owner = OwnerSource.FD if pid_tuple else OwnerSource.UNKNOWN
    family = Family.IPV6 if local_endpoint.address.version == 6 else Family.IPV4
    return Socket(
        family=family,
        local=local_endpoint,
        remote=remote_endpoint,
        state=state_of(state),
        pids=pid_tuple,
        owner_source=owner,
        **fields,
    )


def listener(
    local: str,
    queued: int | None = 0,
    backlog: int | None = 128,
    *,
    pids: Iterable[int] = (),
    **fields: Any,
) -> Socket:
    """A LISTEN socket: ``queued`` is the accept-queue length (Recv-Q), ``backlog`` its maximum
    (Send-Q in ss; ``None`` for a /proc copy)."""
    return sock(
        TcpState.LISTEN,
        local,
        None,
        pids=pids,
        recv_queue=queued,
        send_queue=0 if queued is not None else None,
        listen_backlog=backlog,
        **fields,
    )


def many(count: int, make: Callable[[int], Socket]) -> list[Socket]:
    """``count`` sockets from ``make(0) … make(count - 1)`` (use ``i`` to vary the port)."""
    return [make(i) for i in range(count)]


def process(
    pid: int,
    name: str | None = None,
    *,
    open_fds: int | None = None,
    soft_limit: int | None = None,
    hard_limit: int | None = None,
    **fields: Any,
) -> Process:
    return Process(
        pid=pid,
        name=name,
        open_fds=open_fds,
        fd_soft_limit=soft_limit,
        fd_hard_limit=hard_limit,
        **fields,
    )


def snapshot(
    *sockets: Socket | Iterable[Socket],
    processes: Iterable[Process] = (),
    sysctls: Sysctls | None = None,
    counters: Mapping[str, int] | None = None,
    attribution: Attribution | None = None,
    source: str = "test",
) -> Snapshot:
    """A snapshot of the given sockets (single sockets or lists of them, in order)."""
    flat: list[Socket] = []
    for item in sockets:
        if isinstance(item, Socket):
            flat.append(item)
        else:
            flat.extend(item)
    process_tuple = tuple(processes)
    return Snapshot(
        host=HostInfo(
            hostname="test-host",
            kernel="6.18.0",
            taken_at=0.0,
            source=source,
            privileged=True,
        ),
        attribution=attribution
        if attribution is not None
        else Attribution(attempted=True, processes_scanned=len(process_tuple)),
        sysctls=sysctls if sysctls is not None else Sysctls(),
        counters=dict(counters or {}),
        processes=process_tuple,
        sockets=tuple(flat),
    )


def proc_copy_attribution() -> Attribution:
    """What a copy of /proc/net/tcp gives: no owners at all."""
    return Attribution(attempted=False)
