"""Hypothesis strategies for any :class:`~tcphealth.model.Snapshot` a snapshot file can hold.

Built from the model's type hints, as the snapshot codec is, so a field added to the model is
generated without touching this module. Values are what a stranger's file may carry, not only
what a kernel prints: negative and huge integers, addresses of the other family, names with
escape sequences, markup, newlines and lone surrogates. A few pids, ports and addresses are
drawn often, so sockets share endpoints and owners and the diagnosis has groups to find.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import types
import typing
from typing import Any, Union

from hypothesis import strategies as st

from tcphealth import model
from tcphealth.model import Snapshot

HOSTILE_TEXT = [
    "java",
    "\x1b[31mred\x1b[0m",
    "\x1b]0;title\x07",
    "[bold red]x[/]",
    "a\nb",
    "tab\there",
    "c1\x9bz",
    "\u202egnp.exe",
    "\udcff",
    "x" * 300,
    "",
]

texts = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=20))
integers = st.one_of(
    st.integers(0, 70000),
    st.integers(-3, 3),  # a negative count or sysctl, where only >= 0 makes sense
    st.sampled_from([0, 1, 128, 129, 1024, 65535, 1 << 31, 1 << 63, 1 << 64]),
    st.integers(-(1 << 70), 1 << 70),
)
floats = st.one_of(
    st.floats(0, 100_000, allow_nan=False),
    st.floats(allow_nan=False, allow_infinity=False),
)
pids = st.sampled_from([1, 2, 812, 813])
ports = st.one_of(st.sampled_from([22, 80, 443, 8080, 40000]), integers, st.none())
addresses = st.one_of(
    st.sampled_from(
        [ipaddress.ip_address(text) for text in ("127.0.0.1", "10.0.0.5", "::1", "fe80::1")]
    ),
    st.ip_addresses(),
)

# Fields whose strategy is narrower than their type, so the generated data overlaps.
OVERRIDES: dict[tuple[type[Any], str], st.SearchStrategy[Any]] = {
    (model.Endpoint, "address"): addresses,
    (model.Endpoint, "port"): ports,
    (model.Socket, "pids"): st.lists(pids, max_size=3).map(lambda xs: tuple(sorted(set(xs)))),
    (model.Process, "pid"): st.one_of(pids, integers),
    (model.Process, "cmdline"): st.none() | st.lists(texts, max_size=3).map(tuple),
}


def from_hint(hint: Any) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return st.one_of([from_hint(option) for option in typing.get_args(hint)])
    if hint is type(None):
        return st.none()
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(from_hint(args[0]), max_size=4).map(tuple)
        return st.tuples(*(from_hint(arg) for arg in args))
    if origin is dict:
        key_hint, value_hint = typing.get_args(hint)
        return st.dictionaries(from_hint(key_hint), from_hint(value_hint), max_size=4)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from(list(hint))
    if hint is ipaddress.IPv4Address:
        return st.ip_addresses(v=4)
    if hint is ipaddress.IPv6Address:
        return st.ip_addresses(v=6)
    if hint is bool:
        return st.booleans()
    if hint is int:
        return integers
    if hint is float:
        return floats
    if hint is str:
        return texts
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return dataclass_strategy(hint)
    raise TypeError(f"no strategy for {hint!r}")


def dataclass_strategy(cls: type[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls, vars(model))
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for spec in dataclasses.fields(cls):
        key = (cls, spec.name)
        fields[spec.name] = OVERRIDES[key] if key in OVERRIDES else _deferred(hints[spec.name])
    return st.builds(cls, **fields)


def _deferred(hint: Any) -> st.SearchStrategy[Any]:
    return st.deferred(lambda: from_hint(hint))


def snapshots(max_sockets: int = 8) -> st.SearchStrategy[Snapshot]:
    """Snapshots with up to ``max_sockets`` sockets and a few processes."""
    socket = dataclass_strategy(model.Socket)
    process = dataclass_strategy(model.Process)
    return st.builds(
        Snapshot,
        host=dataclass_strategy(model.HostInfo),
        attribution=dataclass_strategy(model.Attribution),
        sysctls=dataclass_strategy(model.Sysctls),
        counters=st.dictionaries(texts, integers, max_size=4),
        processes=st.lists(process, max_size=4).map(tuple),
        sockets=st.lists(socket, max_size=max_sockets).map(tuple),
        notes=st.lists(texts, max_size=2).map(tuple),
        skipped_lines=integers,
        state_counts=st.dictionaries(texts, integers, max_size=3),
    )


def out_of_kernel_range(snapshot: model.Snapshot) -> bool:
    """Whether a generated snapshot holds a value no kernel gives, which a snapshot file may
    not hold (issue 26): reading such a file back is refused, naming the field."""
    from tcphealth import bounds

    port_range = snapshot.sysctls.ip_local_port_range or ()
    return (
        any(bounds.socket_problem(sock) for sock in snapshot.sockets)
        or any(bounds.process_problem(process) for process in snapshot.processes)
        or any(not 0 <= port <= bounds.PORT_MAX for port in port_range)
        or any(
            not 0 <= ns.inode <= bounds.U64_MAX or (ns.pid is not None and ns.pid < 1)
            for ns in snapshot.namespaces
        )
    )
