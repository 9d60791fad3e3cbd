"""Pastes as incident threads hold them (issue #22): transcripts whose counts carry the
incident, rows whose hosts are names or masks, lsof and BSD rows, and the error when nothing
can be read. Each text below is in the shape of a real paste of fixtures/realworld/threads."""

# ruff: noqa: E501 -- rows are kept as wide as the tools print them

from __future__ import annotations

import ipaddress

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.errors import InputError
from tcphealth.model import Endpoint, Family, Finding, Severity, Snapshot, TcpState
from tcphealth.sources.snapshot_file import snapshot_from_json, snapshot_to_json
from tcphealth.sources.text.lines import listing_limit, listing_state
from tcphealth.sources.text.paste import read_paste


def read(text: str) -> list[Snapshot]:
    return read_paste(text.splitlines(), "paste")


def last(text: str) -> Snapshot:
    return read(text)[-1]


def top(snapshot: Snapshot) -> Finding:
    findings = diagnose(snapshot)
    assert findings, "no finding"
    return findings[0]


# --- counts the transcript printed -------------------------------------------------------------


def test_a_state_filter_counted_with_wc_includes_ss_header_and_is_host_wide() -> None:
    snapshot = last("# ss -ant state close-wait | wc -l\n634\n")
    (count,) = snapshot.reported
    assert (count.state, count.count, count.sockets, count.selects) == (
        TcpState.CLOSE_WAIT,
        634,
        633,
        None,
    )
    assert snapshot.state_counts == {"CLOSE_WAIT": 634}
    assert snapshot.sockets == ()
    found = top(snapshot)
    # 633 is past close_wait_critical, but that level is per process: host-wide it warns
    assert (found.code, found.severity, found.count) == (
        "close-wait-counted",
        Severity.WARNING,
        633,
    )
    assert any("which process holds them" in text for text in found.unchecked)


def test_a_count_selected_by_pgrep_names_the_pid_strace_attached_to() -> None:
    snapshot = last(
        '# ss -ntp state close-wait | grep "pid=`pgrep 3proxy`" | wc -l\n'
        "1837\n"
        '# strace -f -p "`pgrep 3proxy`"\n'
        "strace: Process 971 attached with 1876 threads\n"
    )
    (count,) = snapshot.reported
    assert count.pids == (971,) and count.sockets == 1837  # grep drops ss's header
    found = top(snapshot)
    assert (found.code, found.severity, found.subject.pid, found.blame.value) == (
        "close-wait-counted",
        Severity.CRITICAL,
        971,
        "local-application",
    )


def test_a_selection_saved_to_a_file_carries_to_the_greps_that_count_it() -> None:
    snapshot = last(
        "ubuntu@node:~$ sudo netstat -np | grep kube-proxy > netstat.txt\n"
        "ubuntu@node:~$ wc -l netstat.txt\n"
        "44445 netstat.txt\n"
        "ubuntu@node:~$ grep FIN_WAIT2 netstat.txt | wc -l\n"
        "14544\n"
        "ubuntu@node:~$ grep CLOSE_WAIT netstat.txt | wc -l\n"
        "977\n"
    )
    by_state = {count.state: count for count in snapshot.reported}
    assert set(by_state) == {TcpState.FIN_WAIT2, TcpState.CLOSE_WAIT}
    assert by_state[TcpState.FIN_WAIT2].selects == "kube-proxy"
    assert snapshot.state_counts == {"CLOSE_WAIT": 977, "FIN_WAIT2": 14544}
    found = top(snapshot)
    assert (found.code, found.severity, found.state) == (
        "fin-wait2-counted",
        Severity.CRITICAL,
        TcpState.FIN_WAIT2,
    )


def test_a_loop_of_counts_is_one_count_with_its_history_and_growth_is_critical() -> None:
    snapshot = last(
        "root@h:/# while true; do netstat -an |grep CLOSE_WAIT| wc -l ; sleep 5; done\n"
        "1104\n1107\n1110\n1136\n"
    )
    (count,) = snapshot.reported
    assert (count.count, count.earlier) == (1136, (1104, 1107, 1110))
    assert top(snapshot).severity is Severity.CRITICAL


def test_a_count_that_does_not_grow_stays_a_warning_host_wide() -> None:
    snapshot = last(
        "root@h:/# while true; do netstat -an |grep CLOSE_WAIT| wc -l ; sleep 5; done\n"
        "1136\n1104\n1110\n"
    )
    assert top(snapshot).severity is Severity.WARNING


def test_counts_joined_by_and_go_to_their_own_commands_in_order() -> None:
    snapshot = last(
        "[root@pf ~]# netstat -ntu | grep TIME_WAIT | awk '{print $5}' | wc -l && "
        "netstat -ntu | grep TIME_WAIT | awk '{print $5}' | egrep '127.0.0.1:(6379|6380)' | wc -l\n"
        "5131\n2376\n"
    )
    counts = sorted((count.count, count.selects) for count in snapshot.reported)
    assert counts == [(2376, "127.0.0.1:(6379|6380)"), (5131, None)]
    found = top(snapshot)
    assert (found.code, found.severity, found.count) == (
        "time-wait-counted",
        Severity.WARNING,
        5131,
    )


def test_a_bare_command_with_its_result_after_an_arrow_and_macos_port_range() -> None:
    snapshot = last(
        "netstat -an -p tcp | grep -c '127.0.0.1.*TIME_WAIT'   ->  16128\n"
        "sysctl net.inet.ip.portrange.first net.inet.ip.portrange.last  ->  49152 / 65535\n"
    )
    (count,) = snapshot.reported
    assert (count.state, count.count, count.selects) == (TcpState.TIME_WAIT, 16128, "127.0.0.1")
    assert snapshot.sysctls.ip_local_port_range == (49152, 65535)
    assert top(snapshot).severity is Severity.CRITICAL  # 98% of 16,384 ports


def test_a_grep_prefix_names_its_state_and_a_negated_grep_selects_nothing() -> None:
    snapshot = last(
        "root@graph:/# netstat -apn | grep 25782 | grep -v LISTEN | grep CLOS | wc -l\n2669\n"
    )
    (count,) = snapshot.reported
    assert (count.state, count.selects) == (TcpState.CLOSE_WAIT, "25782")


def test_a_few_time_wait_after_a_run_are_nothing_wrong() -> None:
    snapshot = last(
        "[ xrd-cp]$ netstat -t  | grep TIME_WAIT | wc -l\n0\n"
        "[ xrd-cp]$ go run main.go\n"
        "[ xrd-cp]$ netstat -t  | grep TIME_WAIT | wc -l\n2\n"
    )
    (count,) = snapshot.reported
    assert (count.count, count.earlier) == (2, (0,))
    assert diagnose(snapshot) == []


def test_rows_beside_a_count_name_the_process_it_is_about() -> None:
    snapshot = last(
        "> ss -np|grep 33000|grep CLOSE-WAIT|wc -l\n26358\n\n"
        "Netid  State      Recv-Q Send-Q Local Address:Port   Peer Address:Port\n"
        'tcp    CLOSE-WAIT 0      0      127.0.0.1:33068      127.0.0.1:33000   users:(("java",pid=46695,fd=4494))\n'
        'tcp    CLOSE-WAIT 0      0      127.0.0.1:35035      127.0.0.1:33000   users:(("java",pid=46695,fd=26321))\n'
    )
    assert len(snapshot.sockets) == 2
    found = top(snapshot)
    assert (found.code, found.severity, found.subject.pid) == (
        "close-wait-counted",
        Severity.CRITICAL,
        46695,
    )


def test_netstat_s_counters_alone_are_an_input_and_fifteen_drops_are_nothing() -> None:
    snapshot = last("$ netstat -s | grep -i listen\n    15 SYNs to LISTEN sockets dropped\n")
    assert snapshot.counters == {"TcpExt.ListenDrops": 15}
    assert snapshot.sockets == ()
    assert [f for f in diagnose(snapshot) if f.severity >= Severity.WARNING] == []


# --- rows whose hosts are not addresses --------------------------------------------------------


def test_host_names_service_ports_and_a_missing_peer_column_are_kept() -> None:
    snapshot = last(
        "tcp      160      0 my_server_name:http         my_server_name:51584        CLOSE_WAIT\n"
        "tcp      312      0 my_server_ip.static.:http rate-limited-proxy-72:61249 CLOSE_WAIT\n"
        "tcp       47      0 my_server_ip.static.:http CLOSE_WAIT\n"
    )
    assert [sock.state for sock in snapshot.sockets] == [TcpState.CLOSE_WAIT] * 3
    first, _, cut = snapshot.sockets
    assert (first.local.name, first.local.port, first.recv_queue) == ("my_server_name", 80, 160)
    assert str(first.local) == "my_server_name:80"
    assert not first.local.is_unspecified  # unknown is not a wildcard
    assert (cut.remote.name, cut.remote.port) == ("?", None)


def test_masks_and_localhost() -> None:
    snapshot = last(
        "Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name Timer\n"
        "tcp        0      0 XX.XX.XX.XX:80       XX.XX.XX.XX:17863      FIN_WAIT2   26375/node       off (0.00/0/0)\n"
        "tcp6       0      0 localhost:6790          localhost:41593         ESTABLISHED -                off (0.00/0/0)\n"
    )
    masked, local = snapshot.sockets
    assert (masked.local.name, masked.local.port, masked.pids) == ("XX.XX.XX.XX", 80, (26375,))
    assert local.family is Family.IPV6
    assert local.local == Endpoint(ipaddress.IPv6Address("::1"), 6790)


def test_ss_rows_with_service_names() -> None:
    snapshot = last("tcp    CLOSE-WAIT 13340  0      1.1.1.1:http                 2.2.2.2:49738\n")
    (sock,) = snapshot.sockets
    assert (sock.local.port, sock.recv_queue, sock.local.name) == (80, 13340, None)


def test_an_unknown_service_name_is_an_unknown_port_not_a_guess() -> None:
    # a name only the reporter's own /etc/services could give (no registry has it)
    (sock,) = last("tcp 0 0 10.0.0.1:billing-api 10.0.0.2:5000 ESTABLISHED\n").sockets
    assert sock.local.port is None


@pytest.mark.parametrize(
    ("name", "port"),
    [("ddi-tcp-1", 8888), ("cslistener", 9000), ("irdmi", 8000), ("XmlIpcRegSvc", 9092)],
)
def test_a_registered_name_as_macos_and_rhel_print_it_is_its_port(name: str, port: int) -> None:
    # jetty#2169's lsof row: localhost:ddi-tcp-1 is 8888 in IANA's registry, which macOS's and
    # the RHEL family's /etc/services carry whole (Debian's netbase does not).
    (sock,) = last(f"tcp 0 0 10.0.0.1:{name} 10.0.0.2:5000 ESTABLISHED\n").sockets
    assert sock.local.port == port


def test_a_snapshot_file_keeps_host_names_and_counts_and_writes_neither_when_absent() -> None:
    snapshot = last(
        "# ss -ant state close-wait | wc -l\n634\n"
        "tcp 1 0 10.0.2.16:50918 yyz12s05-in-f4.1e:https CLOSE_WAIT\n"
    )
    again = snapshot_from_json(snapshot_to_json(snapshot), "file")
    assert again.sockets[0].remote == snapshot.sockets[0].remote
    assert again.reported == snapshot.reported
    plain = last("tcp 1 0 10.0.2.16:50918 10.0.0.9:443 CLOSE_WAIT\n")
    text = snapshot_to_json(plain)
    assert '"name"' not in text and '"reported"' not in text


# --- lsof and BSD ------------------------------------------------------------------------------


def test_lsof_rows_name_their_holder_and_read_a_split_or_quoted_state() -> None:
    snapshot = last(
        "COMMAND     PID   USER   FD   TYPE             DEVICE SIZE/OFF NODE NAME\n"
        "node    4981 james    8u  IPv4 825503      0t0     TCP 127.0.0.1:53629->127.0.0.1:3306 (CLOSE_WAIT)\n"
        "dotnet 21799 23974 root 914u IPv4 224825884 0t0 TCP ip-10-X-X-XXX.ec2.internal:43357->ec2-3.compute.amazonaws.com:https (CLOSE _WAIT)\n"
        "> java    22664 xxxx 570u  IPv6           57747443       0t0        TCP localhost:ddi-tcp-1->localhost:60836 (CLOSE_WAIT)\n"
        "nginx     911   root    6u  IPv6 21402      0t0  TCP *:80 (LISTEN)\n"
    )
    node, dotnet, java, nginx = snapshot.sockets
    assert (node.pids, node.remote.port, node.state) == ((4981,), 3306, TcpState.CLOSE_WAIT)
    assert (dotnet.pids, dotnet.state, dotnet.remote.port) == ((21799,), TcpState.CLOSE_WAIT, 443)
    assert (java.pids, java.family, java.remote.port) == ((22664,), Family.IPV6, 60836)
    assert (nginx.state, nginx.local.port, nginx.family) == (TcpState.LISTEN, 80, Family.IPV6)
    assert {p.pid: p.name for p in snapshot.processes}[4981] == "node"


def test_lsof_after_netstat_is_a_view_of_its_own_and_the_repeated_look_is_diagnosed() -> None:
    snapshots = read(
        "root@h:~# netstat -antp\n"
        "tcp 0 1 10.0.0.1:39694 10.0.0.2:9100 SYN_SENT 22347/prometheus\n"
        "root@h:~# netstat -antp\n"
        "tcp 0 1 10.0.0.1:39695 10.0.0.2:9100 SYN_SENT 22347/prometheus\n"
        "root@h:~# lsof -p 22347\n"
        "prometheu 22347 root 1010u IPv4 2043846185 0t0 TCP h:39694->target:9100 (SYN_SENT)\n"
    )
    assert [len(s.sockets) for s in snapshots] == [1, 1]
    assert snapshots[-1].sockets[0].local.port == 39695
    assert any("1 capture(s) by another tool (lsof)" in note for note in snapshots[-1].notes)


def test_openbsd_rows_with_plain_tcp_and_dotted_ports() -> None:
    snapshot = last(
        "tcp 0 0 172.20.66.101.8080 172.20.66.3.17914 FIN_WAIT_2\n"
        "tcp 0 0 172.20.66.101.8080 172.20.66.3.13047 FIN_WAIT_2\n...\n"
    )
    assert [(s.state, s.local.port) for s in snapshot.sockets] == [(TcpState.FIN_WAIT2, 8080)] * 2


# --- nothing readable --------------------------------------------------------------------------


def test_when_no_row_can_be_read_the_error_counts_them_and_gives_the_first_reasons() -> None:
    text = "".join(f"tcp 0 0 1.2.3.{n}:99999 5.6.7.8:80 ESTABLISHED\n" for n in range(5))
    with pytest.raises(InputError) as raised:
        read(text)
    message = str(raised.value)
    assert "5 line(s) looked like socket rows but could not be read" in message
    assert "line 1: port '99999' is not a number" in message
    assert "(and 2 more)" in message


def test_when_nothing_looks_like_a_row_the_error_says_so() -> None:
    with pytest.raises(InputError) as raised:
        read("the sockets are all in CLOSE_WAIT, please help\n")
    assert "no line looked like a socket row" in str(raised.value)


@pytest.mark.parametrize(
    ("command", "state"),
    [
        ("sudo netstat -tpn | grep FIN_WAIT2", TcpState.FIN_WAIT2),
        ("ss -tanp state fin-wait-2", TcpState.FIN_WAIT2),
        ("netstat -an|grep 8080|grep CLOSE_WAIT", TcpState.CLOSE_WAIT),
        ("ss -tanp", None),
        ("netstat -anp | grep 8080", None),  # a port, not a state
        ("netstat -an | grep -v LISTEN", None),  # a negation keeps every other state
        ('netstat -an | egrep "FIN_WAIT2|CLOSE_WAIT"', None),  # an alternation keeps two
    ],
)
def test_the_state_a_listing_command_keeps(command: str, state: TcpState | None) -> None:
    assert listing_state(command) is state


KUBE_PROXY = (
    "$ sudo netstat -tpn{grep}\n"
    "tcp6       0      0 10.244.0.1:33132        10.244.0.35:48936       FIN_WAIT2   "
    "14125/kube-proxy\n"
    "tcp6       0      0 10.244.0.1:48340        10.244.0.35:56339       FIN_WAIT2   "
    "14125/kube-proxy\n"
)


def test_a_listing_kept_to_fin_wait2_does_not_rule_out_a_relay() -> None:
    # kubernetes#17641's shape: `| grep FIN_WAIT2` hides any CLOSE_WAIT kube-proxy keeps.
    snapshot = last(KUBE_PROXY.format(grep=" | grep FIN_WAIT2"))
    assert snapshot.listed_state is TcpState.FIN_WAIT2
    (finding,) = diagnose(snapshot)
    evidence = {e.name: e for e in finding.evidence}
    assert evidence["close_wait_same_holder"].value is None
    assert evidence["close_wait_same_holder"].detail.startswith("not shown")  # type: ignore[union-attr]
    assert any(
        item.startswith("whether it also keeps connections in CLOSE_WAIT")
        and "the paste's listing kept FIN_WAIT2 rows only" in item
        for item in finding.unchecked
    )
    # The whole listing: none listed means none kept.
    whole = last(KUBE_PROXY.format(grep=""))
    assert whole.listed_state is None
    (finding,) = diagnose(whole)
    assert {e.name: e.value for e in finding.evidence}["close_wait_same_holder"] == 0
    assert not any("CLOSE_WAIT (a relay" in item for item in finding.unchecked)


def test_the_listed_state_survives_a_snapshot_file() -> None:
    text = snapshot_to_json(last(KUBE_PROXY.format(grep=" | grep FIN_WAIT2")))
    assert '"listed_state": "FIN_WAIT2"' in text
    assert snapshot_from_json(text, "snap.json").listed_state is TcpState.FIN_WAIT2
    # left out at its default, so a whole listing's file is as before
    assert "listed_state" not in snapshot_to_json(last(KUBE_PROXY.format(grep="")))


# --- a listing cut by head or tail ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "limit"),
    [
        ("ss -tanp | grep CLOSE-WAIT | head", ("head", 10)),
        ("ss -tanp | head -3", ("head -3", 3)),
        ("netstat -tanp | head -n 20", ("head -n 20", 20)),
        ("netstat -tanp | head -n20", ("head -n20", 20)),
        ("netstat -tanp | head --lines=5", ("head --lines=5", 5)),
        ("sudo netstat -tunp|grep traffic_stats|head", ("head", 10)),
        ("ss -tan | tail -4", ("tail -4", 4)),
        ("ss -tan | tail -n +2", None),  # skips the header: cuts nothing off
        ("ss -tan | head -n -5", None),  # all but the last five: not a line limit
        ("ss -tan | head -3 | grep ESTAB", None),  # the grep after head may drop lines
        ("ss -tan | grep ESTAB", None),
        ("date | head -1", None),  # not a listing
    ],
)
def test_a_listing_limit_is_the_head_or_tail_that_ends_its_pipeline(
    command: str, limit: tuple[str, int] | None
) -> None:
    assert listing_limit(command) == limit


NETSTAT_HEADER = "Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name"
ROW = "tcp        1      0 10.1.0.5:8080           10.1.0.9:{port}         CLOSE_WAIT  812/java"


def test_a_listing_that_printed_exactly_heads_lines_was_cut_and_its_rows_are_a_floor() -> None:
    rows = [ROW.format(port=40000 + n) for n in range(9)]
    cut = last("\n".join(["$ netstat -tanp | head", NETSTAT_HEADER, *rows]) + "\n")
    (elision,) = cut.elisions
    assert (elision.mark, elision.states, elision.pids) == (
        "| head",
        (TcpState.CLOSE_WAIT,),
        (812,),
    )
    assert [(f.code, f.count) for f in diagnose(cut) if f.code == "listing-elided"] == [
        ("listing-elided", 9)
    ]
    # One line short of the limit: head let everything through.
    whole = last("\n".join(["$ netstat -tanp | head", NETSTAT_HEADER, *rows[:8]]) + "\n")
    assert whole.elisions == ()
    # The cut is the listing's, not the next command's: a prompt after it ends the count;
    # a line no prompt starts counts as more of the listing's output, so no cut is claimed.
    then = last(
        "\n".join(
            [
                "$ netstat -tanp | head",
                NETSTAT_HEADER,
                *rows,
                "root@web1:~# uptime",
                " 10:00 up 3 days",
            ]
        )
        + "\n"
    )
    assert [e.mark for e in then.elisions] == ["| head"]
    prose = last("\n".join(["$ netstat -tanp | head", NETSTAT_HEADER, *rows, "and so on."]) + "\n")
    assert prose.elisions == ()


@pytest.mark.parametrize(
    ("count", "said", "not_said"),
    [
        (20000, "If they all go to one destination", "more than one local address"),
        # Over the range: one local address cannot hold them all toward one destination.
        (92272, "more than one local address can hold toward one destination", "all go to one"),
    ],
)
def test_a_time_wait_count_over_the_port_range_is_not_said_to_go_to_one_destination(
    count: int, said: str, not_said: str
) -> None:
    snapshot = last(f"$ netstat -tan | grep TIME_WAIT | wc -l\n{count}\n")
    (found,) = [f for f in diagnose(snapshot) if f.code == "time-wait-counted"]
    assert said in found.summary and not_said not in found.summary
    assert found.unchecked[0].endswith(
        "is at most this" if count <= 28232 else "is not known, and may be all of it"
    )


# --- a repeated listing whose last samples printed nothing ---------------------------------------

# The shape of moooofly-lls' sentry-cli loop (session 15, held out): `echo ----` after each
# one-second sample, so a sample with no row leaves two separators with nothing between them.
_LOOP = 'root@sentry-frontend-prod:~# while true; do netstat -anpt|grep sentry-cli; sleep 1; echo "----"; done\n'
_ROW = "tcp        0    {q} 172.31.12.235:{port}     54.222.132.135:443      ESTABLISHED 17942/sentry-cli\n"


def test_a_loop_whose_last_sample_printed_nothing_ends_with_no_socket() -> None:
    """Before: the last sample with a row was diagnosed as the host's present (1 socket)."""
    text = (
        _LOOP
        + "----\n----\n"
        + _ROW.format(q="  0", port=46530)
        + "----\n"
        + _ROW.format(q="155", port=47956)
        + "----\n----\n"
    )
    snapshots = read(text)
    assert [len(s.sockets) for s in snapshots] == [1, 1, 0]
    (note,) = [n for n in snapshots[-1].notes if "printed no rows" in n]
    assert "the repeated listing's last sample printed no rows" in note


def test_a_loop_that_ends_on_a_sample_with_rows_keeps_it() -> None:
    # each sample's own trailing separator does not make an empty one
    text = (
        _LOOP
        + "----\n"
        + _ROW.format(q="  0", port=46530)
        + "----\n"
        + _ROW.format(q="155", port=47956)
        + "----\n"
    )
    snapshots = read(text)
    assert [len(s.sockets) for s in snapshots] == [1, 1]
    assert snapshots[-1].sockets[0].local.port == 47956
    assert not [n for n in snapshots[-1].notes if "printed no rows" in n]


def test_one_listing_followed_by_stray_separators_is_not_a_loop() -> None:
    text = "# netstat -anpt\n" + _ROW.format(q="  0", port=46530) + "----\n----\n----\n"
    (snapshot,) = read(text)
    assert len(snapshot.sockets) == 1


@pytest.mark.parametrize(
    ("count", "severity"),
    [
        # Up to the range, one destination could hold them all: near full is critical.
        (28230, Severity.CRITICAL),
        # Over the range they are spread over several destinations (phpClickHouse#109's 92272):
        # how full any one is the count cannot show, so it warns of the build-up.
        (92272, Severity.WARNING),
    ],
)
def test_a_time_wait_count_over_the_port_range_warns_and_does_not_claim_exhaustion(
    count: int, severity: Severity
) -> None:
    snapshot = last(
        f"$ netstat -tan | awk '$5 ~ /:813/ {{print $6}}' | sort | uniq -c\n  {count} TIME_WAIT\n"
    )
    (found,) = [f for f in diagnose(snapshot) if f.code == "time-wait-counted"]
    assert found.severity is severity
    assert ("warns of the build-up rather than of ports run out" in found.summary) is (
        severity is Severity.WARNING
    )


def test_a_time_wait_count_over_the_port_range_is_critical_beside_an_eaddrnotavail_line() -> None:
    """The error line shows the ports ran out, which the count alone does not."""
    snapshot = last(
        "$ netstat -tan | grep TIME_WAIT | wc -l\n92272\n"
        "dial tcp 10.0.0.5:8123: connect: cannot assign requested address\n"
    )
    (found,) = [f for f in diagnose(snapshot) if f.code == "time-wait-counted"]
    assert found.severity is Severity.CRITICAL
    assert "build-up rather than" not in found.summary
