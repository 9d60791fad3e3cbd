from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from tcphealth.filters import (
    FilterError,
    SocketFilter,
    apply_filter,
    as_options,
    parse_network,
    select_findings,
)
from tcphealth.model import Family, Severity, Socket, SubjectKind, TcpState
from tests.scenario_helpers import finding, leak_snapshot, proc, snap, sock


def _states(sockets: tuple[Socket, ...]) -> list[str]:
    return [s.state.value for s in sockets]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.5", "10.0.0.5/32"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("10.1.2.3/8", "10.0.0.0/8"),  # host bits are forgiven
        ("2001:db8::/32", "2001:db8::/32"),
        ("[2001:db8::1]", "2001:db8::1/128"),
        ("[2001:db8::]/32", "2001:db8::/32"),
        (" fe80::1 ", "fe80::1/128"),
    ],
)
def test_parse_network(text: str, expected: str) -> None:
    assert parse_network(text) == ipaddress.ip_network(expected)


@pytest.mark.parametrize("text", ["10.0.0.300", "db.example", "10.0.0.5:443", ""])
def test_parse_network_rejects_what_is_not_an_address(text: str) -> None:
    with pytest.raises(FilterError, match="is not an IP address or a CIDR network"):
        parse_network(text)


def test_no_criteria_returns_the_snapshot_itself() -> None:
    snapshot = leak_snapshot()
    assert apply_filter(snapshot, SocketFilter()) is snapshot


def test_states_are_alternatives() -> None:
    flt = SocketFilter(states=frozenset({TcpState.LISTEN, TcpState.TIME_WAIT}))
    narrowed = apply_filter(leak_snapshot(), flt)
    assert _states(narrowed.sockets) == ["LISTEN", "LISTEN", "TIME_WAIT"]
    # only the processes holding what is left remain; host facts stay
    assert [p.pid for p in narrowed.processes] == [812, 611]
    assert narrowed.host == leak_snapshot().host


def test_port_matches_local_or_remote() -> None:
    assert (
        _states(apply_filter(leak_snapshot(), SocketFilter(ports=frozenset({5432}))).sockets)
        == ["CLOSE_WAIT"] * 3
    )
    assert _states(apply_filter(leak_snapshot(), SocketFilter(ports=frozenset({22}))).sockets) == [
        "LISTEN"
    ]


def test_criteria_must_all_hold() -> None:
    flt = SocketFilter(states=frozenset({TcpState.LISTEN}), ports=frozenset({5432}))
    assert apply_filter(leak_snapshot(), flt).sockets == ()


def test_pid_and_process_glob_select_owners_and_never_unowned_sockets() -> None:
    by_pid = apply_filter(leak_snapshot(), SocketFilter(pids=frozenset({611})))
    assert [(s.state.value, s.pids) for s in by_pid.sockets] == [("LISTEN", (611,))]
    by_glob = apply_filter(leak_snapshot(), SocketFilter(processes=("ja*",)))
    assert {s.pids for s in by_glob.sockets} == {(812,)}
    assert len(by_glob.sockets) == 4
    assert [p.name for p in by_glob.processes] == ["java"]
    # a glob is case-sensitive, like process names
    assert apply_filter(leak_snapshot(), SocketFilter(processes=("JAVA",))).sockets == ()


def test_local_and_remote_networks() -> None:
    remote = apply_filter(leak_snapshot(), SocketFilter(remote=(parse_network("10.20.0.0/16"),)))
    assert len(remote.sockets) == 3
    local = apply_filter(leak_snapshot(), SocketFilter(local=(parse_network("0.0.0.0"),)))
    assert _states(local.sockets) == ["LISTEN", "LISTEN"]


def test_an_ipv4_network_matches_v4_mapped_ipv6_addresses() -> None:
    mapped = sock("ESTABLISHED", "[::ffff:10.0.0.5]:443", "[::ffff:192.0.2.7]:50000", 5)
    native = sock("ESTABLISHED", "[2001:db8::5]:443", "[2001:db8::7]:50000", 5)
    snapshot = snap([mapped, native], [proc(5, "srv")])
    narrowed = apply_filter(snapshot, SocketFilter(remote=(parse_network("192.0.2.0/24"),)))
    assert narrowed.sockets == (mapped,)


def test_families() -> None:
    v6 = sock("ESTABLISHED", "[2001:db8::5]:443", "[2001:db8::7]:50000", 5)
    v4 = sock("ESTABLISHED", "10.0.0.5:443", "192.0.2.7:50000", 5)
    snapshot = snap([v4, v6], [proc(5, "srv")])
    assert apply_filter(snapshot, SocketFilter(families=frozenset({Family.IPV6}))).sockets == (v6,)
    assert apply_filter(snapshot, SocketFilter(families=frozenset({Family.IPV4}))).sockets == (v4,)
    both = SocketFilter(families=frozenset({Family.IPV4, Family.IPV6}))
    assert apply_filter(snapshot, both).sockets == (v4, v6)


def test_describe_names_every_criterion_in_a_stable_order() -> None:
    flt = SocketFilter(
        states=frozenset({TcpState.TIME_WAIT, TcpState.CLOSE_WAIT}),
        ports=frozenset({443, 80}),
        pids=frozenset({812}),
        processes=("java",),
        local=(parse_network("10.0.0.0/8"),),
        remote=(parse_network("2001:db8::/32"),),
        families=frozenset({Family.IPV6, Family.IPV4}),
    )
    assert flt.describe() == (
        "state=TIME_WAIT,CLOSE_WAIT",
        "port=80,443",
        "pid=812",
        "process=java",
        "local=10.0.0.0/8",
        "remote=2001:db8::/32",
        "family=ipv4,ipv6",
    )


def test_select_findings_shows_those_about_selected_sockets_or_processes() -> None:
    snapshot = leak_snapshot()
    findings = [
        finding("cw", Severity.WARNING, TcpState.CLOSE_WAIT, pid=812),
        finding("tw", Severity.WARNING, TcpState.TIME_WAIT),
        finding("host", Severity.INFO, None),
        finding("sshd", Severity.INFO, TcpState.LISTEN, pid=611),
    ]

    def shown(flt: SocketFilter) -> list[str]:
        narrowed = apply_filter(snapshot, flt)
        return [f.code for f in select_findings(findings, flt, snapshot, narrowed)]

    # The TIME_WAIT socket is not selected, so its finding is not shown; "host" is about
    # every socket and some are selected.
    assert shown(SocketFilter(states=frozenset({TcpState.CLOSE_WAIT}))) == ["cw", "host"]
    # java holds no TIME_WAIT socket: the TIME_WAIT finding is not about it.
    assert shown(SocketFilter(processes=("java",))) == ["cw", "host"]
    assert shown(SocketFilter()) == ["cw", "tw", "host", "sshd"]


def test_host_counters_about_no_socket_are_shown_under_a_filter_only_as_a_limit() -> None:
    # count 0 with the host as subject: counters (drops since boot, tcp_mem pages, conntrack
    # entries), no socket of the snapshot. A filter keeps the limits the host is at and leaves
    # the information about the past, which is about no socket it shows.
    snapshot = leak_snapshot()
    findings = [
        finding("cw", Severity.WARNING, TcpState.CLOSE_WAIT, pid=812),
        finding("since-boot", Severity.INFO, None, kind=SubjectKind.HOST, count=0),
        finding("at-a-limit", Severity.CRITICAL, None, kind=SubjectKind.HOST, count=0),
    ]
    flt = SocketFilter(states=frozenset({TcpState.CLOSE_WAIT}))
    shown = select_findings(findings, flt, snapshot, apply_filter(snapshot, flt))
    assert [f.code for f in shown] == ["cw", "at-a-limit"]
    assert shown[1] == findings[2]  # unchanged: no outside_filter note for the whole host
    assert select_findings(findings, SocketFilter(), snapshot, snapshot) == findings


def test_a_finding_shown_under_a_filter_says_what_lies_outside_it() -> None:
    snapshot = leak_snapshot()
    leak = finding("cw", Severity.WARNING, TcpState.CLOSE_WAIT, pid=812)
    flt = SocketFilter(ports=frozenset({5432}), remote=(parse_network("10.20.0.15"),))
    narrowed = apply_filter(snapshot, flt)
    assert select_findings([leak], flt, snapshot, narrowed)[0].outside_filter == ()
    flt = SocketFilter(states=frozenset({TcpState.CLOSE_WAIT}), ports=frozenset({40001}))
    (shown,) = select_findings([leak], flt, snapshot, apply_filter(snapshot, flt))
    assert shown.outside_filter == (
        "2 of the 3 sockets it concerns lie outside the filter "
        "(--state CLOSE_WAIT --port 40001): judged on the whole host",
    )
    assert replace(shown, outside_filter=()) == leak


def test_as_options_gives_the_options_a_user_types() -> None:
    flt = SocketFilter(
        states=frozenset({TcpState.SYN_SENT}),
        ports=frozenset({80, 443}),
        processes=("javaa",),
        families=frozenset({Family.IPV4}),
    )
    assert as_options(flt) == "--state SYN_SENT --port 80 --port 443 --process javaa -4"
