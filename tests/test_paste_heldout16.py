"""Readings the session-16 held-out pastes of issue #22 showed missing (fixtures/realworld/CASES.md,
"Session 16: held-out cases"):

- a netstat row that a mail client wrapped, its state and PID/Program on the next line, behind
  ``> > `` quoting;
- a /proc/net/tcp6 copy under the command that printed it (``watch ... grep 1F90 tcp6``);
- headerless netstat rows and an ss row in one block: two tools' looks at the host, one capture,
  a socket both list counted once;
- a program's log line saying connect() found no free local port (HAProxy's ``no free ports``),
  naming the process by its syslog tag ``name[pid]``;
- a logged connect() timeout (ETIMEDOUT) beside SYN_SENT rows.

The real shapes are the corpus files they were found in; each is paired with a near miss that
must keep its old reading.
"""

# ruff: noqa: E501 -- rows and log lines are kept as wide as they were printed

from __future__ import annotations

import ipaddress

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.errors import InputError
from tcphealth.model import Blame, ErrorKind, Severity, TcpState
from tcphealth.sources.text import detect as detect_module
from tcphealth.sources.text import read_text
from tcphealth.sources.text.error_lines import match_error_line, names_ports
from tcphealth.sources.text.paste import read_paste
from tests.pastes import corpus, last

# --- wrapped rows ------------------------------------------------------------------------------


def test_a_quoted_row_wrapped_after_the_foreign_address_is_joined() -> None:
    snapshot = last(corpus("mail-nginx-2009-04-011246_"))
    assert [
        (s.state, str(s.local.address), s.local.port, s.remote.port) for s in snapshot.sockets
    ] == [
        (TcpState.TIME_WAIT, "127.0.0.1", 9000, 45603),
        (TcpState.TIME_WAIT, "127.0.0.1", 9000, 45601),
    ]
    assert snapshot.skipped_lines == 0


def test_a_wrapped_row_keeps_its_program_and_timer_from_the_next_line() -> None:
    paste = (
        "tcp        0      0 10.0.0.5:45210          10.0.0.9:5432\n"
        "ESTABLISHED 4242/postgres  keepalive (7184.32/0/0)\n"
    )
    (sock,) = last(paste).sockets
    assert sock.state is TcpState.ESTABLISHED
    assert sock.pids == (4242,)
    assert sock.remote.port == 5432


def test_a_short_row_not_followed_by_its_columns_is_still_skipped_with_its_reason() -> None:
    paste = (
        "tcp        0      0 10.0.0.5:45210          10.0.0.9:5432\n"
        "the rest of the row was lost\n"
        "tcp        0      0 10.0.0.5:45211          10.0.0.9:5432          ESTABLISHED\n"
    )
    snapshot = last(paste)
    assert [s.remote.port for s in snapshot.sockets] == [5432]
    assert snapshot.sockets[0].local.port == 45211
    assert snapshot.skipped_lines == 1
    assert any(":1: line skipped: 5 columns" in note for note in snapshot.notes)


def test_a_short_row_at_the_end_is_skipped_and_said_why() -> None:
    with pytest.raises(InputError, match="5 columns, at least 6 expected"):
        last("tcp        0      0 10.0.0.5:45210          10.0.0.9:5432\n")


# --- /proc/net/tcp under its command -----------------------------------------------------------


def test_a_proc_tcp6_copy_under_its_watch_command_is_read_as_proc() -> None:
    text = corpus("blog-williamsbdev_")
    assert detect_module.detect(text) == detect_module.PROC
    (snapshot,) = read_text(text, "paste")
    (sock,) = snapshot.sockets
    assert sock.state is TcpState.ESTABLISHED
    assert sock.local.address == ipaddress.ip_address("::ffff:172.17.0.12")
    assert (sock.local.port, sock.remote.port, sock.inode) == (40128, 8080, 4648852)


def test_a_prompt_and_cat_above_a_proc_copy() -> None:
    text = (
        "root@web1:~# cat /proc/net/tcp\n"
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n"
    )
    (snapshot,) = read_text(text, "paste")
    (sock,) = snapshot.sockets
    assert (sock.state, sock.local.port) == (TcpState.LISTEN, 8080)


def test_more_lines_before_a_proc_row_than_a_command_takes_is_not_a_proc_copy() -> None:
    text = (
        "We saw this on the host.\nIt happened twice.\nThen it stopped.\nHere is the row:\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n"
    )
    assert detect_module.detect(text) == detect_module.TEXT


# --- two tools in one block ---------------------------------------------------------------------


def test_netstat_rows_then_an_ss_row_are_one_capture() -> None:
    snapshots = read_paste(corpus("blog-alibabacloud-acceptq-overflow_").splitlines(), "paste")
    assert len(snapshots) == 1
    (snapshot,) = snapshots
    counted: dict[TcpState, int] = {}
    for sock in snapshot.sockets:
        counted[sock.state] = counted.get(sock.state, 0) + 1
    assert counted == {TcpState.ESTABLISHED: 6, TcpState.LISTEN: 1}
    assert {s.recv_queue for s in snapshot.sockets if s.state is TcpState.ESTABLISHED} == {11}


NETSTAT_AND_SS_OF_ONE_CONNECTION = """\
tcp        0      0 10.0.0.5:45210          10.0.0.9:5432           ESTABLISHED
tcp        0      0 10.0.0.5:45212          10.0.0.9:5432           TIME_WAIT

ESTAB      0      0      10.0.0.5:45210      10.0.0.9:5432
ESTAB      0      0      10.0.0.5:45212      10.0.0.9:5432
"""


def test_a_socket_both_tools_list_is_counted_once_as_the_later_look_shows_it() -> None:
    snapshots = read_paste(NETSTAT_AND_SS_OF_ONE_CONNECTION.splitlines(), "paste")
    assert len(snapshots) == 1
    sockets = sorted((s.local.port or 0, s.state.value) for s in snapshots[0].sockets)
    # Each connection's addresses are one socket's: once each, in the later (ss) row's state.
    assert sockets == [(45210, "ESTABLISHED"), (45212, "ESTABLISHED")]
    assert any("2 row(s) showed a socket already listed" in n for n in snapshots[0].notes)


def test_rows_with_an_inode_and_without_one_of_the_same_connection_are_one_socket() -> None:
    paste = (
        "tcp        0      0 10.0.0.5:45210          10.0.0.9:5432           ESTABLISHED 1000       81234      4242/app\n"
        "\n"
        "ESTAB      0      0      10.0.0.5:45210      10.0.0.9:5432\n"
        "ESTAB      0      0      10.0.0.5:45214      10.0.0.9:5432\n"
    )
    (snapshot,) = read_paste(paste.splitlines(), "paste")
    assert [(s.local.port, s.inode) for s in snapshot.sockets] == [(45210, None), (45214, None)]


def test_the_same_tool_printed_again_is_still_a_new_capture() -> None:
    header = "Proto Recv-Q Send-Q Local Address           Foreign Address         State\n"
    paste = (
        f"{header}tcp        0      0 10.0.0.5:45210          10.0.0.9:5432           ESTABLISHED\n"
        f"{header}tcp        0      0 10.0.0.5:45210          10.0.0.9:5432           CLOSE_WAIT\n"
    )
    snapshots = read_paste(paste.splitlines(), "paste")
    assert [[s.state for s in snap.sockets] for snap in snapshots] == [
        [TcpState.ESTABLISHED],
        [TcpState.CLOSE_WAIT],
    ]


# --- a logged "no free ports" ----------------------------------------------------------------------


def test_haproxys_no_free_ports_is_port_exhaustion_of_the_process_its_tag_names() -> None:
    snapshot = last(corpus("blog-pusher-ephemeral-ports_"))
    (line,) = snapshot.error_lines
    assert (line.kind, line.program, line.pid, line.ports_named) == (
        ErrorKind.LOCAL_PORTS,
        "haproxy",
        3569,
        True,
    )
    # cat /proc/sys/net/ipv4/ip_local_port_range, tab-separated, under its prompt
    assert snapshot.sysctls.ip_local_port_range == (32768, 61000)
    top = diagnose(snapshot)[0]
    assert (top.code, top.severity, top.state, top.blame) == (
        "ports-exhausted-logged",
        Severity.CRITICAL,
        TcpState.ESTABLISHED,
        Blame.LOCAL_APPLICATION,
    )
    assert (top.subject.pid, top.subject.process, top.count) == (3569, "haproxy", 3)
    assert "a part of the listing only" in top.summary


def test_eaddrnotavail_without_words_for_ports_still_only_warns() -> None:
    paste = (
        "Dec  7 10:00:01 lb1 app[812]: dial tcp 10.0.0.9:443: connect: cannot assign requested address\n"
        "ESTAB      0      0      10.0.0.5:45210      10.0.0.9:443\n"
    )
    snapshot = last(paste)
    assert (snapshot.error_lines[0].pid, snapshot.error_lines[0].ports_named) == (812, False)
    codes = {f.code: f.severity for f in diagnose(snapshot)}
    assert codes.get("ports-unavailable-logged") is Severity.WARNING
    assert "ports-exhausted-logged" not in codes


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("haproxy[3569]: Connect() failed for backend socket: no free ports", True),
        ("proxy: no more free local ports toward 10.0.0.9:443", True),
        ("grep 'no free ports' /var/log/haproxy.log", None),
        ("the pool has no free workers", None),
    ],
)
def test_the_words_that_name_ports(line: str, named: bool | None) -> None:
    kind = match_error_line(line)
    if named is None:
        assert kind is None
    else:
        assert kind is ErrorKind.LOCAL_PORTS
        assert names_ports(line) is named


def test_a_cat_of_another_file_prints_no_setting() -> None:
    paste = (
        "$ cat /proc/sys/net/ipv4/ip_local_port_range /proc/sys/net/ipv4/tcp_fin_timeout\n"
        "32768\t61000\n"
        "60\n"
        "ESTAB      0      0      10.0.0.5:45210      10.0.0.9:443\n"
    )
    assert last(paste).sysctls.ip_local_port_range is None


# --- a logged connect() timeout beside SYN_SENT -------------------------------------------------


def test_a_logged_connect_timeout_beside_syn_sent_says_the_peer_does_not_answer() -> None:
    snapshot = last(
        corpus("blog-cloudflare-sockets-refuse-to-die_ss-o-tcpdump-interleaved_synsent")
    )
    (sock,) = snapshot.sockets
    assert (sock.state, sock.retransmits) == (TcpState.SYN_SENT, 0)
    (finding,) = diagnose(snapshot)
    assert (finding.code, finding.severity, finding.state, finding.blame) == (
        "syn-sent-connect-timed-out",
        Severity.WARNING,
        TcpState.SYN_SENT,
        Blame.REMOTE_PEER,
    )
    assert finding.subject.endpoint == "host:1"
    assert finding.evidence[0].value == "02:10.000 connect ETIMEDOUT"


def test_without_the_timeout_line_a_first_syn_is_not_judged() -> None:
    text = corpus("blog-cloudflare-sockets-refuse-to-die_ss-o-tcpdump-interleaved_synsent")
    snapshot = last(text.replace("connect ETIMEDOUT", "connect returned"))
    assert diagnose(snapshot) == []


def test_a_timeout_line_without_syn_sent_says_nothing_of_a_peer() -> None:
    paste = (
        "dial tcp 10.0.0.9:443: connect: connection timed out\n"
        "ESTAB      0      0      10.0.0.5:45210      10.0.0.9:443\n"
    )
    assert "syn-sent-connect-timed-out" not in {f.code for f in diagnose(last(paste))}


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("dial tcp 10.0.0.1:443: connect: connection timed out", ErrorKind.CONNECT_TIMEOUT),
        (
            "connect() failed (110: Connection timed out) while connecting to upstream",
            ErrorKind.CONNECT_TIMEOUT,
        ),
        ("java.net.ConnectException: Connection timed out", ErrorKind.CONNECT_TIMEOUT),
        # the same errno from read(): an established connection's data unacknowledged
        ("read tcp 10.0.0.5:45210->10.0.0.9:443: read: connection timed out", None),
        ("upstream timed out (110: Connection timed out) while reading response header", None),
        ('grep "connect timed out" app.log', None),
    ],
)
def test_which_timeouts_are_a_connects(line: str, kind: ErrorKind | None) -> None:
    assert match_error_line(line) is kind


# --- the last look of each kind ------------------------------------------------------------------

ONE_OFF_THEN_REPEATED = """\
$ ss -ant | grep 5432
ESTAB      0      0      10.0.0.5:45210      10.0.0.9:5432
ESTAB      0      0      10.0.0.5:45212      10.0.0.9:5432
$ ss -lnt
State      Recv-Q Send-Q Local Address:Port   Peer Address:Port
LISTEN     0      128    0.0.0.0:8080         0.0.0.0:*
$ ss -lnt
State      Recv-Q Send-Q Local Address:Port   Peer Address:Port
LISTEN     129    128    0.0.0.0:8080         0.0.0.0:*
"""


def test_a_look_taken_once_is_read_with_the_last_capture_of_another_kind() -> None:
    snapshots = read_paste(ONE_OFF_THEN_REPEATED.splitlines(), "paste")
    assert len(snapshots) == 2
    last_look = snapshots[-1]
    assert sorted((s.state.value, s.local.port, s.recv_queue) for s in last_look.sockets) == [
        ("ESTABLISHED", 45210, 0),
        ("ESTABLISHED", 45212, 0),
        ("LISTEN", 8080, 129),  # the repeated look's last, not its first
    ]
    assert any("1 listing taken once, before the last capture" in n for n in last_look.notes)


LOOP_WHOSE_LAST_SAMPLE_LACKS_A_SELECTION = """\
$ ss -lnt
LISTEN     0      128    0.0.0.0:8080         0.0.0.0:*
$ ss -ant | grep CLOSE-WAIT
CLOSE-WAIT 1      0      10.0.0.5:8080       10.0.0.7:51000
$ ss -lnt
LISTEN     0      128    0.0.0.0:8080         0.0.0.0:*
$ ss -ant | grep CLOSE-WAIT
CLOSE-WAIT 1      0      10.0.0.5:8080       10.0.0.7:51002
$ ss -lnt
LISTEN     0      128    0.0.0.0:8080         0.0.0.0:*
$ ss -ant | grep CLOSE-WAIT
"""


def test_a_kind_a_loop_printed_in_several_samples_is_not_carried_into_the_last() -> None:
    snapshots = read_paste(LOOP_WHOSE_LAST_SAMPLE_LACKS_A_SELECTION.splitlines(), "paste")
    assert len(snapshots) == 3
    # the last grep printed nothing: the CLOSE_WAIT it printed twice before is gone
    assert [s.state for s in snapshots[-1].sockets] == [TcpState.LISTEN]
    assert not any("taken once" in n for n in snapshots[-1].notes)
