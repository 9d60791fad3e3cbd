from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from tcphealth.model import Endpoint, Severity, Socket, Sysctls, TcpState
from tcphealth.pipeline import analyse
from tcphealth.report import ExitCode, build_report
from tcphealth.sources import load
from tcphealth.sources.text import read_text
from tests.golden_update import FIXTURES, fixture_names
from tests.scenario_helpers import ep, finding, leak_finding, leak_snapshot, proc, snap, sock


def test_states_are_counted_in_canonical_order_and_only_when_present() -> None:
    report = build_report(leak_snapshot(), [])
    assert report.socket_count == 6
    assert list(report.states.items()) == [
        (TcpState.TIME_WAIT, 1),
        (TcpState.CLOSE_WAIT, 3),
        (TcpState.LISTEN, 2),
    ]


def test_findings_are_ordered_most_severe_first_then_by_the_diagnosis_order() -> None:
    info = finding("a-info", Severity.INFO)
    warning_1 = finding("b-warning", Severity.WARNING)
    critical = finding("c-critical", Severity.CRITICAL)
    warning_2 = finding("d-warning", Severity.WARNING)
    report = build_report(snap(), [info, warning_1, critical, warning_2])
    assert [f.code for f in report.findings] == ["c-critical", "b-warning", "d-warning", "a-info"]


def test_process_summary_has_states_worst_finding_and_comes_first_when_it_has_findings() -> None:
    minor = finding("minor", Severity.INFO, pid=812)
    report = build_report(leak_snapshot(), [minor, leak_finding()])
    java, sshd = report.processes
    assert java.pid == 812
    assert java.process is not None and java.process.name == "java"
    assert java.socket_count == 4
    assert java.states == {TcpState.CLOSE_WAIT: 3, TcpState.LISTEN: 1}
    assert java.worst is not None and java.worst.code == "close-wait-leak"
    assert [f.code for f in java.findings] == ["close-wait-leak", "minor"]
    assert sshd.pid == 611 and sshd.worst is None and sshd.socket_count == 1


def test_processes_without_findings_are_ordered_by_socket_count_then_pid() -> None:
    sockets = [
        sock("LISTEN", "0.0.0.0:22", "0.0.0.0:0", 30),
        sock("LISTEN", "0.0.0.0:80", "0.0.0.0:0", 20),
        sock("LISTEN", "0.0.0.0:81", "0.0.0.0:0", 20),
        sock("LISTEN", "0.0.0.0:23", "0.0.0.0:0", 10),
    ]
    report = build_report(snap(sockets, [proc(10, "a"), proc(20, "b"), proc(30, "c")]), [])
    assert [owner.pid for owner in report.processes] == [20, 10, 30]


def test_unowned_sockets_are_their_own_group() -> None:
    report = build_report(leak_snapshot(), [])
    assert report.unowned.process is None
    assert report.unowned.socket_count == 1
    assert report.unowned.states == {TcpState.TIME_WAIT: 1}
    assert all(owner.pid is not None for owner in report.processes)


def test_a_socket_shared_after_fork_counts_for_every_holder() -> None:
    shared = sock("LISTEN", "0.0.0.0:80", "0.0.0.0:0", 700, 701)
    report = build_report(snap([shared], [proc(700, "nginx"), proc(701, "nginx")]), [])
    assert {owner.pid: owner.socket_count for owner in report.processes} == {700: 1, 701: 1}
    assert report.socket_count == 1
    assert report.process_names((700, 701)) == "nginx"


def test_a_pid_named_only_by_a_socket_or_a_finding_still_gets_a_summary() -> None:
    report = build_report(
        snap([sock("ESTABLISHED", "10.0.0.5:41000", "10.0.0.9:6379", 55)]),
        [finding("fd-limit", Severity.WARNING, None, pid=77)],
    )
    by_pid = {owner.pid: owner for owner in report.processes}
    assert set(by_pid) == {55, 77}
    assert by_pid[55].process is not None and by_pid[55].process.name is None
    assert by_pid[77].socket_count == 0 and by_pid[77].worst is not None


def test_client_side_groups_drop_the_local_ephemeral_port() -> None:
    report = build_report(leak_snapshot(), [])
    java = report.processes[0]
    group = java.groups[0]
    assert (group.state, str(group.local), group.remote_text, group.count) == (
        TcpState.CLOSE_WAIT,
        "10.0.0.5:*",
        "10.20.0.15:5432",
        3,
    )
    assert group.recv_queue_max == 1 and group.send_queue_max == 0 and group.peers == 1


def test_server_side_groups_fold_several_clients_into_one_row() -> None:
    sockets = [
        sock("ESTABLISHED", "10.0.0.5:443", "192.0.2.1:50001", 9, recv_queue=5),
        sock("ESTABLISHED", "10.0.0.5:443", "192.0.2.1:50002", 9),
        sock("ESTABLISHED", "10.0.0.5:443", "192.0.2.2:50003", 9, recv_queue=7),
        sock("ESTABLISHED", "10.0.0.5:22", "192.0.2.10:50122", 9),
    ]
    groups = build_report(snap(sockets, [proc(9, "srv")]), []).processes[0].groups
    shown = [(str(g.local), g.remote_text, g.count, g.peers, g.recv_queue_max) for g in groups]
    assert shown == [
        ("10.0.0.5:443", "*:*", 3, 2, 7),
        # a single client keeps its address
        ("10.0.0.5:22", "192.0.2.10:*", 1, 1, 0),
    ]


def test_a_service_on_an_ephemeral_port_without_its_listener_is_the_shared_end() -> None:
    """Neither the listeners nor the port range tell the sides apart (both ports ephemeral,
    the LISTEN row gone): the end the connections share is the service, so the clients'
    TIME_WAIT make one row, not one row each under the lower port."""
    sockets = [
        sock("TIME_WAIT", f"127.0.0.1:{port}", "127.0.0.1:41691", 9)
        for port in (36134, 36142, 36148, 50150, 60164)
    ]
    # One more with the service's port below the client's, as the old rule would have
    # taken for the server side: the shared end still decides.
    sockets.append(sock("TIME_WAIT", "127.0.0.1:33000", "127.0.0.1:41691", 9))
    groups = build_report(snap(sockets, [proc(9, "client")]), []).processes[0].groups
    assert [(str(g.local), g.remote_text, g.count) for g in groups] == [
        ("127.0.0.1:*", "127.0.0.1:41691", 6)
    ]
    # A lone connection ties (each end once): the higher port is still the client's.
    lone = [sock("ESTABLISHED", "127.0.0.1:50000", "127.0.0.1:40000", 9)]
    groups = build_report(snap(lone, [proc(9, "client")]), []).processes[0].groups
    assert [(str(g.local), g.remote_text) for g in groups] == [("127.0.0.1:*", "127.0.0.1:40000")]


def test_listen_groups_keep_both_endpoints_and_the_backlog() -> None:
    report = build_report(leak_snapshot(), [])
    listen = next(g for g in report.processes[0].groups if g.state is TcpState.LISTEN)
    assert (str(listen.local), str(listen.remote), listen.listen_backlog) == (
        "0.0.0.0:8080",
        "0.0.0.0:0",
        100,
    )


def test_the_ephemeral_range_comes_from_the_snapshot() -> None:
    # With a range of 1000-2000, port 1500 is the client side even though it is the lower one.
    connection = sock("ESTABLISHED", "10.0.0.5:1500", "10.0.0.9:3000", 5)
    snapshot = snap([connection], [proc(5, "x")], sysctls=Sysctls(ip_local_port_range=(1000, 2000)))
    group = build_report(snapshot, []).processes[0].groups[0]
    assert (str(group.local), group.remote_text) == ("10.0.0.5:*", "10.0.0.9:3000")


def test_ipv6_endpoints_are_bracketed() -> None:
    connection = sock("ESTABLISHED", "[2001:db8::5]:443", "[2001:db8::77]:52000", 5)
    group = build_report(snap([connection], [proc(5, "x")]), []).processes[0].groups[0]
    assert (str(group.local), group.remote_text) == ("[2001:db8::5]:443", "[2001:db8::77]:*")
    assert group.local == Endpoint(ep("[2001:db8::5]:443").address, 443)


@pytest.mark.parametrize(
    ("severities", "fail_on", "expected"),
    [
        ((), Severity.WARNING, ExitCode.OK),
        ((Severity.INFO,), Severity.WARNING, ExitCode.OK),
        ((Severity.INFO,), Severity.INFO, ExitCode.WARNING),
        ((Severity.WARNING,), Severity.WARNING, ExitCode.WARNING),
        ((Severity.WARNING, Severity.INFO), Severity.INFO, ExitCode.WARNING),
        ((Severity.WARNING,), Severity.CRITICAL, ExitCode.OK),
        ((Severity.CRITICAL, Severity.WARNING), Severity.WARNING, ExitCode.CRITICAL),
        ((Severity.CRITICAL,), Severity.CRITICAL, ExitCode.CRITICAL),
        ((Severity.CRITICAL,), Severity.INFO, ExitCode.CRITICAL),
    ],
)
def test_exit_code_policy(
    severities: tuple[Severity, ...], fail_on: Severity, expected: ExitCode
) -> None:
    findings = [finding(f"f{index}", severity) for index, severity in enumerate(severities)]
    assert build_report(snap(), findings).exit_code(fail_on) is expected


def test_exit_code_defaults_to_failing_on_warnings() -> None:
    assert build_report(snap(), [finding("w", Severity.WARNING)]).exit_code() is ExitCode.WARNING
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3]


def test_count_by_severity_lists_every_severity() -> None:
    report = build_report(snap(), [finding("a", Severity.WARNING), finding("b", Severity.WARNING)])
    assert report.count_by_severity() == {
        Severity.CRITICAL: 0,
        Severity.WARNING: 2,
        Severity.INFO: 0,
        Severity.OK: 0,
    }


def test_a_large_host_aggregates_into_a_handful_of_groups() -> None:
    # Speed is the benchmark's business (benchmarks/); this checks that 30,000 sockets
    # summarise into groups rather than rows.
    sockets = [
        sock(
            "TIME_WAIT" if index % 3 else "ESTABLISHED",
            f"10.0.{index // 6000}.5:{1024 + index % 6000}",
            "198.51.100.20:443",
            *((7,) if index % 3 == 0 else ()),
        )
        for index in range(30_000)
    ]
    report = build_report(snap(sockets, [proc(7, "client")]), [])
    assert report.socket_count == 30_000
    assert report.states == {TcpState.ESTABLISHED: 10_000, TcpState.TIME_WAIT: 20_000}
    assert report.processes[0].socket_count == 10_000
    # Five local addresses, one destination: a handful of groups, not 30,000 rows.
    assert len(report.unowned.groups) == 5


def test_a_listening_port_in_the_ephemeral_range_stays_the_service_side() -> None:
    # A listener bound to port 0 gets an ephemeral-range port (42511 here); its accepted
    # sockets must still group under it, with the clients' ports dropped -- not the reverse.
    listener = sock("LISTEN", "127.0.0.1:42511", "0.0.0.0:0", 8035)
    server_sides = [
        sock("CLOSE_WAIT", "127.0.0.1:42511", f"127.0.0.1:{39894 + n}", 8035, recv_queue=1)
        for n in range(12)
    ]
    client_sides = [
        sock("FIN_WAIT2", f"127.0.0.1:{39894 + n}", "127.0.0.1:42511") for n in range(12)
    ]
    report = build_report(snap([listener, *server_sides, *client_sides], [proc(8035, "py")]), [])
    (owner,) = report.processes
    close_wait = [g for g in owner.groups if g.state is TcpState.CLOSE_WAIT]
    assert [(str(g.local), g.remote_text, g.count) for g in close_wait] == [
        ("127.0.0.1:42511", "127.0.0.1:*", 12)
    ]
    assert [(str(g.local), g.remote_text, g.count) for g in report.unowned.groups] == [
        ("127.0.0.1:*", "127.0.0.1:42511", 12)
    ]


def test_equal_endpoints_held_in_different_objects_make_one_group() -> None:
    # The grouping pass keys endpoints by identity; equal ones must still end up together.
    first = sock("CLOSE_WAIT", "10.0.0.5:40001", "10.20.0.15:5432", 9, recv_queue=1)
    second = sock("CLOSE_WAIT", "10.0.0.5:40002", "10.20.0.15:5432", 9, recv_queue=3)
    assert first.remote == second.remote and first.remote is not second.remote
    groups = build_report(snap([first, second], [proc(9, "app")]), []).processes[0].groups
    shown = [(str(g.local), g.remote_text, g.count, g.recv_queue_max) for g in groups]
    assert shown == [("10.0.0.5:*", "10.20.0.15:5432", 2, 3)]


def test_the_grouping_loop_does_what_its_functions_say() -> None:
    """build_report's pass writes out the grouping rule and kernel_age_floor for speed:
    every socket must land in the group the rule, stated plainly here, gives, with the age
    kernel_age_floor gives."""
    from collections import defaultdict

    from tcphealth.diagnose.timeline import kernel_age_floor
    from tcphealth.model import TcpInfo
    from tcphealth.report import _group_by_identity, _Grouping

    listening = frozenset({80, 40000})
    sockets = [
        sock("LISTEN", "0.0.0.0:80", "0.0.0.0:0", 1),
        sock("LISTEN", "127.0.0.1:40000", "0.0.0.0:0", 1),
    ]
    ports = [22, 80, 443, 1023, 32767, 32768, 40000, 45000, 60999, 61000]
    states = ["ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT2", "TIME_WAIT", "SYN_SENT", "LAST_ACK"]
    for number, (local_port, remote_port) in enumerate(
        (a, b) for a in ports for b in ports if a != b
    ):
        state = states[number % len(states)]
        info = None if number % 4 == 0 else TcpInfo(last_ack_recv_ms=number * 37)
        v4 = number % 5 != 0
        near = f"10.0.{number % 3}.5:{local_port}" if v4 else f"[2001:db8::5]:{local_port}"
        far = f"198.51.100.{number % 2}:{remote_port}" if v4 else f"[2001:db8::9]:{remote_port}"
        pids: tuple[int, ...] = () if number % 7 == 0 else (1 + number % 3,)
        sockets.append(sock(state, near, far, *pids, tcp_info=info))
    lost = sock("ESTABLISHED", "10.0.0.5:0", "198.51.100.1:443", 2)
    sockets.append(dataclasses.replace(lost, local=Endpoint(lost.local.address, None)))

    undecided_ends: Counter[Endpoint] = Counter()
    for one in sockets:
        ends = (one.local.port, one.remote.port)
        if (
            one.state is not TcpState.LISTEN
            and None not in ends
            and not set(ends) & listening
            and len({32768 <= port <= 60999 for port in ends if port is not None}) == 1
        ):
            undecided_ends.update((one.local, one.remote))

    def grouped_under(one: Socket) -> tuple[Endpoint, Endpoint]:
        """_Grouping's rule: the client side loses its port."""
        local, remote = one.local, one.remote
        if one.state is TcpState.LISTEN or local.port is None or remote.port is None:
            return local, remote
        if local.port in listening:
            client_is_local = False
        elif remote.port in listening:
            client_is_local = True
        elif (32768 <= local.port <= 60999) != (32768 <= remote.port <= 60999):
            client_is_local = 32768 <= local.port <= 60999
        elif undecided_ends[local] != undecided_ends[remote]:
            client_is_local = undecided_ends[local] < undecided_ends[remote]
        else:
            client_is_local = local.port >= remote.port
        if client_is_local:
            return Endpoint(local.address, None), remote
        return local, Endpoint(remote.address, None)

    expected: defaultdict[tuple[object, ...], list[float | None]] = defaultdict(list)
    for one in sockets:
        local, remote = grouped_under(one)
        expected[(one.pids, one.state, str(local), str(remote))].append(kernel_age_floor(one))

    groups, truncated = _group_by_identity(
        sockets, _Grouping((32768, 60999), listening, sockets), None
    )
    got: dict[tuple[object, ...], tuple[int, float | None]] = {}
    for (pids, state, _, _), (local, remote, group) in groups.items():
        # Equal endpoints in different objects are separate groups here (joined later).
        key = (pids, state, str(local), str(remote))
        count, oldest = got.get(key, (0, None))
        ages = [age for age in (oldest, group.oldest) if age is not None]
        got[key] = (count + group.count, max(ages) if ages else None)
    assert truncated == 0
    assert len(expected) > 50
    want = {
        key: (len(ages), max((age for age in ages if age is not None), default=None))
        for key, ages in expected.items()
    }
    assert got == want


def test_a_filtered_report_counts_ownerless_sockets_among_those_it_shows() -> None:
    from tcphealth.model import Attribution, OwnerSource
    from tcphealth.phrases import unseen_owner_note
    from tests import builders

    owned = builders.sock("ESTAB", "10.0.0.1:5000", "10.0.0.2:40000", pids=(7,), inode=11)
    ownerless = [
        builders.sock("LISTEN", f"0.0.0.0:{port}", None, inode=20 + port, owner=OwnerSource.UNSEEN)
        for port in (2024, 2025)
    ]
    whole = dataclasses.replace(
        builders.snapshot(
            owned,
            ownerless,
            attribution=Attribution(attempted=True, processes_scanned=1, sockets_unseen=2),
        ),
        notes=("a note of another kind", unseen_owner_note(2)),
    )
    # Unfiltered: the collector's note as it wrote it.
    assert build_report(whole, []).notes == whole.notes
    # A filter that keeps only the owned socket: the note is not about anything shown.
    only_owned = dataclasses.replace(whole, sockets=(owned,))
    assert build_report(only_owned, [], filters=("--port 5000",)).notes == (
        "a note of another kind",
    )
    # A filter that keeps one of the two: the note counts that one, in its place.
    one = dataclasses.replace(whole, sockets=(owned, ownerless[0]))
    assert build_report(one, [], filters=("--port 2024",)).notes == (
        "a note of another kind",
        unseen_owner_note(1),
    )


@pytest.mark.parametrize("name", fixture_names())
def test_a_report_without_groups_counts_what_the_grouped_one_counts(name: str) -> None:
    # The metrics' report (grouped=False) skips the grouping pass; everything else it holds
    # -- counts per state, per process and for no process, the order of the processes, the
    # truncated sockets -- is what the grouped report of the same snapshot holds.
    snapshot = load(FIXTURES / f"{name}.json")
    grouped = analyse(snapshot)
    ungrouped = analyse(snapshot, grouped=False)
    assert ungrouped.states == grouped.states
    assert ungrouped.truncated_sockets == grouped.truncated_sockets
    assert ungrouped.findings == grouped.findings
    assert [(o.pid, o.socket_count, o.states) for o in ungrouped.processes] == [
        (o.pid, o.socket_count, o.states) for o in grouped.processes
    ]
    assert (ungrouped.unowned.socket_count, ungrouped.unowned.states) == (
        grouped.unowned.socket_count,
        grouped.unowned.states,
    )
    assert all(not owner.groups for owner in ungrouped.processes)


def test_a_group_kept_by_its_only_holder_is_not_changed_by_what_is_merged_into_another() -> None:
    """Issue 26: a group held by one process is kept as it is (not copied) by that process's
    summary; a group shared after fork() is still copied for each holder, so merging into
    one holder's group never changes the other's counts."""
    from tests.builders import many, process, snapshot, sock

    shot = snapshot(
        # Shared by 10 and 20 (a forked worker): counted for both. First, so that a copy it
        # should have been is what pid 10's own sockets are merged into next.
        *many(4, lambda i: sock("ESTAB", "10.0.0.1:5432", f"10.0.0.9:{42000 + i}", pids=(10, 20))),
        # Each socket built with its own endpoint objects: groups by identity, joined by value.
        *many(5, lambda i: sock("ESTAB", "10.0.0.1:5432", f"10.0.0.9:{40000 + i}", pids=(10,))),
        processes=[process(10, "postgres"), process(20, "postgres")],
    )
    report = build_report(shot, [])
    by_pid = {owner.process.pid: owner for owner in report.processes if owner.process}
    assert by_pid[10].socket_count == 9
    assert by_pid[20].socket_count == 4
    assert [group.count for group in by_pid[10].groups] == [9]
    assert [group.count for group in by_pid[20].groups] == [4]


def test_the_report_joined_from_namespaces_counts_ownerless_sockets_among_those_shown() -> None:
    # Live runs read every namespace and join one report per namespace: the note must be
    # made again for the selection there too (it was passed through whole).
    from tcphealth.model import Attribution, OwnerSource
    from tcphealth.namespaced import join
    from tcphealth.phrases import unseen_owner_note
    from tests import builders

    owned = builders.sock("ESTAB", "10.0.0.1:5000", "10.0.0.2:40000", pids=(7,), inode=11)
    ownerless = builders.sock("LISTEN", "0.0.0.0:2024", None, inode=12, owner=OwnerSource.UNSEEN)
    whole = dataclasses.replace(
        builders.snapshot(
            owned,
            ownerless,
            attribution=Attribution(attempted=True, processes_scanned=1, sockets_unseen=1),
        ),
        notes=(unseen_owner_note(1),),
    )
    assert join(whole, [], ()).notes == (unseen_owner_note(1),)
    selected = dataclasses.replace(whole, sockets=(owned,))
    assert join(selected, [], ("--port 5000",)).notes == ()


def test_a_pasted_name_or_mask_stays_itself_when_the_port_is_dropped() -> None:
    # Each name shares the family's stand-in address: without the name, rows to two hosts
    # (and a masked local name) grouped as one and showed as 0.0.0.0:*.
    text = (
        "dotnet 21799 root 912u IPv4 224825876 0t0 TCP ip-10-X-X-XXX.ec2.internal:43647->"
        "db1.example.com:https (CLOSE_WAIT)\n"
        "dotnet 21799 root 914u IPv4 224825884 0t0 TCP ip-10-X-X-XXX.ec2.internal:43357->"
        "db2.example.com:https (CLOSE_WAIT)\n"
        "dotnet 21799 root 915u IPv4 224825885 0t0 TCP ip-10-X-X-XXX.ec2.internal:43358->"
        "db2.example.com:https (CLOSE_WAIT)\n"
    )
    (snapshot,) = read_text(text, "paste")
    (owner,) = analyse(snapshot).processes
    groups = sorted((str(g.local), str(g.remote), g.count) for g in owner.groups)
    assert groups == [
        ("ip-10-X-X-XXX.ec2.internal:*", "db1.example.com:443", 1),
        ("ip-10-X-X-XXX.ec2.internal:*", "db2.example.com:443", 2),
    ]
