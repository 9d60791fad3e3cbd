"""The fast constructors of the model (SocketDraft, new_endpoint, new_tcp_info) make exactly
what the dataclass constructors make: same class, same fields, equal, same hash, frozen."""

from __future__ import annotations

import dataclasses
import inspect
import ipaddress
from collections.abc import Callable
from typing import Any

import pytest

from tcphealth.model import (
    Endpoint,
    Family,
    OwnerSource,
    Socket,
    SocketDraft,
    TcpInfo,
    TcpState,
    TimerKind,
    new_endpoint,
    new_tcp_info,
)

V4 = ipaddress.IPv4Address("10.0.0.5")
V6 = ipaddress.IPv6Address("2001:db8::1")


def _field_names(cls: type[Any]) -> list[str]:
    return [field.name for field in dataclasses.fields(cls)]


@pytest.mark.parametrize(
    ("cls", "builder"),
    [(Endpoint, new_endpoint), (TcpInfo, new_tcp_info), (Socket, SocketDraft)],
)
def test_builder_takes_every_field_in_declaration_order(
    cls: type[Any], builder: Callable[..., Any]
) -> None:
    assert list(inspect.signature(builder).parameters) == _field_names(cls)
    assert cls.__slots__ == tuple(_field_names(cls))


def _socket_values(tcp_info: TcpInfo | None) -> dict[str, Any]:
    return {
        "family": Family.IPV6,
        "local": Endpoint(V6, 443),
        "remote": Endpoint(ipaddress.IPv6Address("::ffff:10.0.0.9"), 51000),
        "state": TcpState.CLOSE_WAIT,
        "send_queue": 0,
        "recv_queue": 1,
        "listen_backlog": None,
        "timer": TimerKind.KEEPALIVE,
        "timer_seconds": 7.25,
        "retransmits": None,
        "probes": 2,
        "uid": 1000,
        "inode": 123456789,
        "pids": (812, 813),
        "owner_source": OwnerSource.FD,
        "raw_state": None,
        "cookie": (1 << 40) + 5,
        "tcp_info": tcp_info,
        "shutdown": 1,
        "truncated": False,
        "netns": 4026532174,
        "drops": 3,
    }


def _new_socket(values: dict[str, Any]) -> Socket:
    """A Socket as the netlink source makes one: a draft, finished with its owners."""
    draft = SocketDraft(*values.values())
    return draft.finish(values["pids"], values["owner_source"])


def test_a_finished_draft_equals_the_constructor() -> None:
    info_values = dict(zip(_field_names(TcpInfo), range(100, 113), strict=True))
    info = new_tcp_info(*info_values.values())
    assert type(info) is TcpInfo
    assert info == TcpInfo(**info_values)
    assert hash(info) == hash(TcpInfo(**info_values))

    values = _socket_values(info)
    built = _new_socket(values)
    made = Socket(**values)
    assert type(built) is Socket
    assert built == made
    assert hash(built) == hash(made)
    assert repr(built) == repr(made)
    assert dataclasses.asdict(built) == dataclasses.asdict(made)
    # Every field is set: none was left as an empty slot.
    assert {name: getattr(built, name) for name in _field_names(Socket)} == values
    # And it behaves as the dataclass does afterwards.
    assert dataclasses.replace(built, inode=0).is_orphan is True
    assert dataclasses.replace(built, inode=0) == dataclasses.replace(made, inode=0)


def test_built_objects_stay_frozen() -> None:
    endpoint = new_endpoint(V4, 80)
    with pytest.raises(dataclasses.FrozenInstanceError):
        endpoint.port = 81  # type: ignore[misc]
    sock = _new_socket(_socket_values(None))
    with pytest.raises(dataclasses.FrozenInstanceError):
        sock.state = TcpState.LISTEN  # type: ignore[misc]
    # No new attribute either. (Python 3.11's frozen __setattr__ for a slots dataclass fails
    # with TypeError here rather than FrozenInstanceError -- for the constructor's objects too.)
    with pytest.raises((AttributeError, TypeError)):
        sock.extra = 1  # type: ignore[attr-defined]
    with pytest.raises((AttributeError, TypeError)):
        Socket(**_socket_values(None)).extra = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "address", [V4, V6, ipaddress.IPv6Address("::ffff:10.0.0.5"), ipaddress.IPv4Address(0)]
)
@pytest.mark.parametrize("port", [None, 0, 443, 65535])
def test_endpoint_equality_and_hash_agree(address: Any, port: int | None) -> None:
    built = new_endpoint(address, port)
    made = Endpoint(address, port)
    assert built == made
    assert hash(built) == hash(made)
    # The hash reads ipaddress's private integer: it must still be the address's value.
    assert hash(made) == hash((int(address), port))
    assert {built: 1}[made] == 1
    assert str(built) == str(made)


def test_endpoints_of_different_families_stay_apart_as_keys() -> None:
    # 0.0.0.1 and ::1 have the same integer value, so the same hash; they must still be two
    # different keys.
    v4 = Endpoint(ipaddress.IPv4Address(1), 80)
    v6 = Endpoint(ipaddress.IPv6Address(1), 80)
    assert v4 != v6
    assert len({v4: 1, v6: 2}) == 2
