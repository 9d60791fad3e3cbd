"""States under every spelling other tools print, kernel codes, endpoints."""

from __future__ import annotations

import ipaddress

import pytest

from tcphealth.model import (
    TCP_STATES,
    Endpoint,
    TcpState,
    TimerKind,
    parse_state,
    state_from_kernel_code,
    timer_from_kernel_code,
)

# KERNEL.md, "How other tools spell states": ss, Linux netstat, BSD/macOS/Windows, psutil.
SPELLINGS = {
    "ss": {
        "ESTAB": TcpState.ESTABLISHED,
        "SYN-SENT": TcpState.SYN_SENT,
        "SYN-RECV": TcpState.SYN_RECV,
        "FIN-WAIT-1": TcpState.FIN_WAIT1,
        "FIN-WAIT-2": TcpState.FIN_WAIT2,
        "TIME-WAIT": TcpState.TIME_WAIT,
        "UNCONN": TcpState.CLOSE,
        "CLOSE-WAIT": TcpState.CLOSE_WAIT,
        "LAST-ACK": TcpState.LAST_ACK,
        "LISTEN": TcpState.LISTEN,
        "CLOSING": TcpState.CLOSING,
    },
    "linux netstat": {state.value: state for state in TCP_STATES},
    "bsd, macos, windows": {
        "FIN_WAIT_1": TcpState.FIN_WAIT1,
        "FIN_WAIT_2": TcpState.FIN_WAIT2,
        "SYN_RECEIVED": TcpState.SYN_RECV,
        "SYN_RCVD": TcpState.SYN_RECV,
        "LISTENING": TcpState.LISTEN,
        "CLOSED": TcpState.CLOSE,
    },
    "psutil": {"NONE": TcpState.CLOSE, "DELETE_TCB": TcpState.CLOSE},
}


@pytest.mark.parametrize("tool", sorted(SPELLINGS))
def test_every_tool_spelling_maps_to_one_canonical_state(tool: str) -> None:
    for spelling, expected in SPELLINGS[tool].items():
        assert parse_state(spelling) is expected, spelling
        assert parse_state(spelling.lower()) is expected, spelling
        assert parse_state(f"  {spelling}\r\n") is expected, spelling


def test_all_eleven_states_are_reachable_from_the_kernel_and_by_name() -> None:
    assert len(TCP_STATES) == 11
    from_codes = {state_from_kernel_code(code) for code in range(1, 12)}
    assert from_codes == set(TCP_STATES)
    assert {parse_state(state.value) for state in TCP_STATES} == set(TCP_STATES)


def test_new_kernel_codes_and_unknown_codes() -> None:
    assert state_from_kernel_code(0x0C) is TcpState.SYN_RECV
    assert state_from_kernel_code(0x0D) is TcpState.BOUND_INACTIVE
    assert state_from_kernel_code(0x00) is TcpState.UNKNOWN
    assert state_from_kernel_code(0xFF) is TcpState.UNKNOWN
    assert parse_state("ESTABLISHED-ISH") is None
    assert timer_from_kernel_code(4) is TimerKind.ZERO_WINDOW_PROBE
    assert timer_from_kernel_code(9) is TimerKind.UNKNOWN


def test_endpoint_text() -> None:
    assert str(Endpoint(ipaddress.IPv4Address("10.0.0.9"), 5432)) == "10.0.0.9:5432"
    assert str(Endpoint(ipaddress.IPv6Address("fe80::1"), 443)) == "[fe80::1]:443"
    mapped = Endpoint(ipaddress.IPv6Address("::ffff:10.1.2.3"), 80)
    assert str(mapped) == "[::ffff:10.1.2.3]:80"
    assert mapped.ipv4_mapped == ipaddress.IPv4Address("10.1.2.3")
    assert Endpoint(ipaddress.IPv4Address("10.0.0.9"), 1).ipv4_mapped is None
    assert str(Endpoint(ipaddress.IPv4Address("0.0.0.0"), None)) == "0.0.0.0:*"
