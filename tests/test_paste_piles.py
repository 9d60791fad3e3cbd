"""ESTABLISHED piled by one client toward one server, and counts that grow (issue #22): the
readings an expert makes of venti#85 (4 rows to alertmanager:9093, '...', then 1009 counted),
harbor#2954 (5859 counted by `grep registry`) and beaker_extensions#6 (6008, then 8009 rows
on :6379 in any state) -- each from the paste alone -- and the same verdict from the rule that
sees the rows (piled), with tcp_info's idle times deciding leak or load where a live host
gives them. The live check is tests/test_live_piled.py."""

from __future__ import annotations

import dataclasses

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.diagnose.config import Thresholds
from tcphealth.model import Finding, Severity, SubjectKind, TcpInfo, TcpState
from tcphealth.sources.text.lines import count_parts
from tcphealth.sources.text.paste import read_paste
from tests.builders import listener, process, snapshot, sock
from tests.pastes import corpus, last

PILED, COUNTED, GROWING = "established-piled", "established-counted", "count-growing"


def codes(findings: list[Finding]) -> list[tuple[str, Severity]]:
    return [(f.code, f.severity) for f in findings]


def the(findings: list[Finding], code: str) -> Finding:
    (found,) = [f for f in findings if f.code == code]
    return found


def evidence(finding: Finding) -> dict[str, object]:
    return {item.name: item.value for item in finding.evidence}


# --- the parser: what a count's grep names ---------------------------------------------------


def test_a_host_name_grepped_from_names_without_programs_is_the_peer() -> None:
    (harbor,) = count_parts("docker exec clair netstat|grep registry|grep ESTABLISHED|wc -l", {})
    assert harbor is not None
    assert (harbor.state, harbor.selects, harbor.peer, harbor.program) == (
        TcpState.ESTABLISHED,
        "registry",
        "registry",
        None,
    )
    # with -p the word may be a program; with -n no host name is printed; protocol words name
    # no host
    for command in (
        "netstat -tp | grep registry | grep -c ESTABLISHED",
        "netstat -tn | grep registry | grep -c ESTABLISHED",
        "netstat -a | grep tcp | grep -c ESTABLISHED",
    ):
        (part,) = count_parts(command, {})
        assert part is not None and part.peer is None, command


def test_a_listing_s_rows_counted_in_any_state_are_a_count_of_no_state_lsof_s_are_not() -> None:
    (snap,) = read_paste(
        [
            "$ netstat -tn | grep 6379 | wc -l",
            "12",
            "$ lsof -p 4242 | wc -l",
            "80",
        ],
        "paste",
    )
    assert [(c.state, c.count, c.command) for c in snap.reported] == [
        (None, 12, "netstat -tn | grep 6379 | wc -l")
    ]
    assert snap.state_counts == {}
    assert diagnose(snap) == []  # one count: no growth, no state to judge


# --- established-counted: the real pastes --------------------------------------------------------


def test_harbor_a_count_selected_by_the_peer_s_name_is_a_pile_toward_it() -> None:
    snap = last(corpus("github-harbor-2954"))
    found = the(diagnose(snap), COUNTED)
    assert (found.severity, found.state, found.blame.value, found.count) == (
        Severity.WARNING,
        TcpState.ESTABLISHED,
        "local-application",
        5859,
    )
    assert (found.subject.kind, found.subject.endpoint, found.subject.pid) == (
        SubjectKind.PEER,
        "registry",
        None,
    )
    assert found.summary.startswith(
        "The paste counts 5,859 ESTABLISHED connections, which this host holds open to registry:"
    )
    assert "not reusing them" in found.summary and "never closed" in found.summary
    assert evidence(found)["paste_peer"] == "registry"
    # the name is taken for the peer's, and said to be
    assert found.unchecked[0].startswith("that `registry` is the peer's host name")
    assert any("lastsnd/lastrcv" in item for item in found.unchecked)


def test_venti_a_host_wide_count_beside_rows_all_to_one_destination_is_an_assumed_pile() -> None:
    snap = last(corpus("github-venti-85"))
    findings = diagnose(snap)
    assert codes(findings) == [(COUNTED, Severity.WARNING), ("listing-elided", Severity.INFO)]
    found = findings[0]
    where = "alertmanager.kube-system.svc.cluster.local:9093"
    assert found.count == 1009 and found.subject.endpoint == where
    address = found.subject.address
    assert address is not None
    assert (address.port, address.name) == (9093, "alertmanager.kube-system.svc.cluster.local")
    assert "(by the rows it lists; the count itself is wider)" in found.summary
    assert evidence(found)["listed_destination"] == where
    assert found.unchecked[0].startswith(f"that the 1,005 not listed go to {where} too")
    assert found.next_steps[0].startswith(f"ss -tnpi state established dst {where}   #")


def _rows_then_count(rows: list[str], count: int, *extra: str) -> list[str]:
    return [
        "$ ss -tnp state established",
        *rows,
        "...",
        "$ ss -tnH state established | wc -l",
        str(count),
        *extra,
    ]


def _client_rows(destinations: list[str], pid: int = 4242) -> list[str]:
    header = "Recv-Q Send-Q Local Address:Port Peer Address:Port Process"
    return [header] + [
        f'0      0      10.0.0.1:{40000 + i:<5}   {where}   users:(("app",pid={pid},fd={10 + i}))'
        for i, where in enumerate(destinations)
    ]


def test_a_host_wide_count_beside_rows_to_several_destinations_says_nothing() -> None:
    lines = _rows_then_count(_client_rows(["10.0.0.5:443", "10.0.0.6:443", "10.0.0.5:443"]), 2000)
    assert [f.code for f in diagnose(last("\n".join(lines)))] == ["listing-elided"]


def test_a_server_s_count_of_its_clients_is_no_pile() -> None:
    # rows from the local listener's port: a server's clients, each its own peer
    header = "Recv-Q Send-Q Local Address:Port Peer Address:Port Process"
    lines = [
        "$ ss -tlnp",
        "State Recv-Q Send-Q Local Address:Port Peer Address:Port Process",
        'LISTEN 0 511 0.0.0.0:443 0.0.0.0:* users:(("nginx",pid=10,fd=6))',
        "$ ss -tnp state established",
        header,
        '0 0 10.0.0.1:443 10.9.9.9:50000 users:(("nginx",pid=10,fd=7))',
        '0 0 10.0.0.1:443 10.9.9.9:50001 users:(("nginx",pid=10,fd=8))',
        "...",
        "$ ss -tnH state established | wc -l",
        "5000",
    ]
    assert COUNTED not in [f.code for f in diagnose(last("\n".join(lines)))]


def test_the_paste_s_error_lines_show_the_harm_critical() -> None:
    rows = _client_rows(["10.0.0.5:6379", "10.0.0.5:6379"])
    base = _rows_then_count(rows, 3000)
    plain = the(diagnose(last("\n".join(base))), COUNTED)
    assert plain.severity is Severity.WARNING and plain.subject.pid == 4242
    ports = the(
        diagnose(
            last(
                "\n".join(
                    [*base, "dial tcp 10.0.0.5:6379: connect: cannot assign requested address"]
                )
            )
        ),
        COUNTED,
    )
    assert ports.severity is Severity.CRITICAL
    assert "a connect() already found none free" in ports.summary
    assert any(item.name == "error_line" for item in ports.evidence)
    files = the(
        diagnose(last("\n".join([*base, "accept4: too many open files; retrying in 1s"]))),
        COUNTED,
    )
    assert files.severity is Severity.CRITICAL
    assert "ran out of file descriptors" in files.summary


def test_below_the_pile_threshold_a_count_says_nothing_and_the_knob_moves_it() -> None:
    snap = last("\n".join(_rows_then_count(_client_rows(["10.0.0.5:6379"] * 2), 499)))
    assert COUNTED not in [f.code for f in diagnose(snap)]
    lowered = dataclasses.replace(Thresholds(), established_pile_warning=400)
    assert the(diagnose(snap, lowered), COUNTED).count == 499


# --- the same sockets, the same verdict: rows listed, not counted ---------------------------------


def test_the_same_pile_listed_row_by_row_gets_the_same_verdict_from_the_rows_rule() -> None:
    # 600 rows listed from one holder to one destination, no count, no timers (a paste)
    lines = ["$ ss -tnp state established", *_client_rows(["10.0.0.5:6379"] * 600)]
    snap = last("\n".join(lines))
    assert len(snap.sockets) == 600
    (found,) = diagnose(snap)
    counted = the(
        diagnose(last("\n".join(_rows_then_count(_client_rows(["10.0.0.5:6379"] * 2), 600)))),
        COUNTED,
    )
    assert found.code == PILED
    assert (found.severity, found.state, found.blame) == (
        counted.severity,
        counted.state,
        counted.blame,
    )
    assert (found.subject.pid, found.subject.endpoint, found.count) == (4242, "10.0.0.5:6379", 600)
    assert found.summary.startswith(
        "pid 4242 (app) holds 600 ESTABLISHED connections open to 10.0.0.5:6379:"
    )
    assert "Whether they are idle or busy the source does not say." in found.summary
    assert any("lastsnd/lastrcv" in item for item in found.unchecked)


def test_a_count_beside_rows_that_already_pile_is_left_to_the_rows_rule() -> None:
    lines = _rows_then_count(_client_rows(["10.0.0.5:6379"] * 600), 900)
    assert [f.code for f in diagnose(last("\n".join(lines)))].count(COUNTED) == 0


def _live_pile(idle_ms: list[int], *, listening: bool = False) -> list[Finding]:
    """Client connections of pid 7 to 10.0.0.5:5432 with tcp_info saying each one's idle time."""
    sockets = [
        sock(
            TcpState.ESTABLISHED,
            f"10.0.0.1:{40000 + i}",
            "10.0.0.5:5432",
            pids=[7],
            send_queue=0,
            recv_queue=0,
            tcp_info=TcpInfo(
                last_data_sent_ms=idle, last_data_recv_ms=idle + 5, last_ack_recv_ms=10
            ),
        )
        for i, idle in enumerate(idle_ms)
    ]
    extra = [listener("0.0.0.0:40000", pids=[7])] if listening else []
    thresholds = dataclasses.replace(Thresholds(), established_pile_warning=10)
    snap = snapshot(sockets, extra, processes=[process(7, "worker")])
    return [f for f in diagnose(snap, thresholds) if f.code == PILED]


def test_tcp_info_idle_for_long_reads_as_left_open() -> None:
    (found,) = _live_pile([4_000_000] * 12)  # no data either way for 66 min (keepalive ACKs aside)
    assert found.severity is Severity.WARNING
    assert (
        "12 of them have carried no data for 3,600 s (about 60 min) or more: opened and left open"
        in found.summary
    )
    assert evidence(found)["idle_at_least"] == 12 and evidence(found)["busy"] == 0
    assert found.unchecked == ()


def test_tcp_info_idle_for_minutes_is_said_not_yet_known() -> None:
    (found,) = _live_pile([600_000] * 12)  # 10 min
    assert found.severity is Severity.WARNING
    assert "not yet the 3,600 s (about 60 min) that calls a connection left open" in found.summary
    assert found.unchecked[0].startswith("whether they are left open (a leak) or a pool's spare")


def test_tcp_info_busy_now_reads_as_load_not_a_leak() -> None:
    (found,) = _live_pile([200] * 12)
    assert found.severity is Severity.INFO
    assert "active now, not left idle -- that many requests in flight at once is load rather " in (
        found.summary
    )
    assert evidence(found)["busy"] == 12
    # recent activity may be the connect itself: said, with what would tell
    assert found.unchecked == (
        "whether they carry requests or were only just opened: tcp_info's idle times count "
        "from the connect; a leak's connections stay idle, which a look after 3,600 s (about "
        "60 min) tells",
    )


def test_a_pile_is_one_holder_s_and_a_listener_s_accepted_connections_are_none() -> None:
    assert _live_pile([200] * 9) == []  # below 10
    # the one on local port 40000 is the listener's accepted connection, not the client's
    assert [f.count for f in _live_pile([200] * 12, listening=True)] == [11]


# --- count-growing -----------------------------------------------------------------------------


def test_beaker_counts_rising_in_any_state_are_a_build_up_toward_the_selection() -> None:
    snap = last(corpus("github-beaker-extensions-6"))
    (found,) = diagnose(snap)
    assert (found.code, found.severity, found.state, found.blame.value, found.count) == (
        GROWING,
        Severity.WARNING,
        None,
        "local-application",
        8009,
    )
    assert (found.subject.kind, found.subject.endpoint) == (SubjectKind.HOST, "6379")
    assert found.summary.startswith(
        "The paste's own `netstat -tn|grep 6379|wc -l` printed 6,008, then 8,009: the "
        "connections it selects (6379, in any state) rose by 2,001 and never fell."
    )
    assert evidence(found)["rise"] == 2001
    assert any(item.startswith("in which states they are") for item in found.unchecked)


def _loop(command: str, values: list[int]) -> list[str]:
    return [line for value in values for line in (f"$ {command}", str(value))]


@pytest.mark.parametrize(
    ("values", "grows"),
    [
        ([100, 400, 700], True),
        ([100, 600], True),
        ([100, 599], False),  # less than counted_growth_warning in all
        ([100, 900, 800], False),  # fell once: not a build-up
        ([900], False),  # one count says nothing of growth
    ],
)
def test_growth_needs_every_step_up_and_enough_in_all(values: list[int], grows: bool) -> None:
    snap = last("\n".join(_loop("netstat -tn | grep :8080 | wc -l", values)))
    assert [f.code for f in diagnose(snap)] == ([GROWING] if grows else [])


def test_time_wait_rising_is_more_traffic_not_a_build_up() -> None:
    snap = last("\n".join(_loop("netstat -tn | grep :8080 | grep -c TIME_WAIT", [10, 900])))
    assert GROWING not in [f.code for f in diagnose(snap)]


def test_a_growing_count_its_state_s_rule_judges_is_not_said_twice() -> None:
    snap = last("\n".join(_loop("netstat -tnp | grep java | grep -c CLOSE_WAIT", [100, 900, 1500])))
    assert [f.code for f in diagnose(snap)] == ["close-wait-counted"]


def test_a_growing_count_of_established_toward_no_known_peer_is_a_build_up() -> None:
    # a port selection: whether :5432 is the peer's or this host's own cannot be told, so no
    # pile is claimed; the rise is still a build-up toward what the grep selects
    snap = last(
        "\n".join(_loop("netstat -tn | grep :5432 | grep -c ESTABLISHED", [100, 700, 1300]))
    )
    (found,) = diagnose(snap)
    assert (found.code, found.state, found.subject.kind, found.subject.endpoint) == (
        GROWING,
        TcpState.ESTABLISHED,
        SubjectKind.HOST,
        ":5432",
    )
    assert "(:5432, in ESTABLISHED) rose by 1,200" in found.summary


def test_a_growing_count_toward_a_named_peer_is_its_pile_with_the_counts_as_evidence() -> None:
    snap = last("\n".join(_loop("netstat -t | grep db1 | grep -c ESTABLISHED", [10, 300, 900])))
    (found,) = diagnose(snap)
    assert (found.code, found.subject.endpoint, found.count) == (COUNTED, "db1", 900)
    assert evidence(found)["paste_counts"] == "10, 300, 900"
