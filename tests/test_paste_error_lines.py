"""Readings the fourth blind corpus pass of issue #22 showed missing, where the pastes were taken
as a reader pastes them -- the listing with the lines of the same comment around it:

- a program's own error line as evidence: EMFILE ("too many open files": the process is at its
  descriptor limit), EADDRNOTAVAIL ("cannot assign requested address": a connect() found no
  local port) and EADDRINUSE beside TIME_WAIT ("address already in use": a bind() of a chosen
  port met a connection of that port still in TIME_WAIT);
- prompts whose command runs ``ss``/``netstat``/``lsof`` through a wrapper (``docker exec``,
  ``kubectl exec``, ``ip netns exec``, ``nsenter``) or after ``date &&``; ``lsof -p PID`` naming
  the process a paste is about;
- a count of rows in no one state (``netstat -tn | grep 6379 | wc -l``): read and said, judged
  by no rule;
- a word grepped from ``ss``/``netstat`` output without ``-p`` is an address's name, not a
  program's.

The real shapes are the corpus files they were found in (fixtures/realworld/threads/); each is
paired with a near miss that must keep its old reading.
"""

# ruff: noqa: E501 -- rows and log lines are kept as wide as they were printed

from __future__ import annotations

import errno
import os
from dataclasses import replace

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.errors import InputError
from tcphealth.model import (
    ErrorKind,
    ErrorLine,
    Finding,
    ReportedCount,
    Severity,
    SubjectKind,
    TcpState,
)
from tcphealth.sources.text.error_lines import match_error_line
from tcphealth.sources.text.lines import count_parts, match_prompt
from tcphealth.sources.text.paste import read_paste
from tests.builders import many, process, snapshot, sock
from tests.pastes import corpus, last


def by_code(findings: list[Finding], code: str) -> list[Finding]:
    return [found for found in findings if found.code == code]


# --- which lines are error lines ------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "20160825T101438.805110: [err] evsig_init: socketpair: Too many open files",
        "2020/09/21 08:40:19 http: Accept error: accept tcp [::]:4080: accept4: too many open files; retrying in 1s",
        "java.net.SocketException: Too many open files",
        "OSError: [Errno 24] Too many open files",
        "warn: error raised: Error: accept EMFILE",
        'after killing the process, when i had a lower fds limit it died with "accept EMFILE", same stacktrace',
        os.strerror(errno.EMFILE),  # the C library's own words on this machine
    ],
)
def test_descriptor_exhaustion_is_read_wherever_the_line_says_it(line: str) -> None:
    assert match_error_line(line) is ErrorKind.DESCRIPTORS


@pytest.mark.parametrize(
    "line",
    [
        "dial tcp 10.0.0.5:443: connect: cannot assign requested address",
        "Warning: stream_socket_client(): unable to connect to tcp://127.0.0.1:2300 (Cannot assign requested address)",
        "Unable to connect server irc.rizon.net port 6667 [Can't assign requested address: 52.193.79.145]",  # macOS
        "connect() failed with EADDRNOTAVAIL",
        os.strerror(errno.EADDRNOTAVAIL),
    ],
)
def test_no_local_port_is_read_wherever_the_line_says_it(line: str) -> None:
    assert match_error_line(line) is ErrorKind.LOCAL_PORTS


@pytest.mark.parametrize(
    "line",
    [
        "WSAEADDRINUSE (10048)",
        "Address already in use",
        "listen tcp :8080: bind: address already in use",
        "OSError: [Errno 98] Address already in use",
        os.strerror(errno.EADDRINUSE),
    ],
)
def test_an_address_in_use_is_read_wherever_the_line_says_it(line: str) -> None:
    assert match_error_line(line) is ErrorKind.ADDRESS_IN_USE


@pytest.mark.parametrize(
    "line",
    [
        "$ grep 'Address already in use' /var/log/app.log | wc -l",
        # ENFILE is the system's file table (fs.file-max), not the process's limit
        "VFS: file-max limit 65536 reached: Too many open files in system",
        "accept: ENFILE",
        # the limits file names the limit without saying it was reached
        "Max open files            1024                 4096                 files",
        # a search for the words is a command, not the error (with or without a prompt)
        "$ grep -c 'Too many open files' /var/log/app.log",
        "journalctl -u app | grep EMFILE | wc -l",
        "# zgrep 'cannot assign requested address' /var/log/syslog*",
        # other errors
        "dial tcp 10.0.0.8:5432: connect: connection refused",
        "read tcp 10.0.0.1:5000->10.0.0.9:443: read: connection reset by peer",
        # a line too long to be a log line
        "x" * 1001 + " Too many open files",
    ],
)
def test_lines_that_are_not_those_errors(line: str) -> None:
    assert match_error_line(line) is None


# --- error lines in a paste ------------------------------------------------------------------------


def test_an_error_line_and_a_process_named_by_lsof_are_a_reading_on_their_own() -> None:
    # proxysql#663: the log line, then 'lsof -p 26768 |wc -l' twice under '# date && ...' prompts
    snapshot = last(corpus("github-proxysql-663"))
    assert snapshot.sockets == () and snapshot.reported == ()
    assert [(e.kind, e.count, e.line) for e in snapshot.error_lines] == [
        (ErrorKind.DESCRIPTORS, 1, 3)
    ]
    assert snapshot.error_lines[0].text.endswith("socketpair: Too many open files")
    assert [p.pid for p in snapshot.processes] == [26768]
    # the lsof counts are said, as files lsof lists, not as descriptors or sockets
    (note,) = [n for n in snapshot.notes if "lsof -p 26768" in n]
    assert "9,107, then 13,142" in note and "its descriptors, and its directory" in note


def test_error_lines_are_counted_once_per_kind_first_line_kept() -> None:
    text = (
        "tcp        0      0 10.0.0.1:80      10.0.0.9:51000     ESTABLISHED 812/app\n"
        "2024-01-01 10:00:00 accept4: too many open files; retrying in 1s\n"
        "2024-01-01 10:00:01 accept4: too many open files; retrying in 1s\n"
        "2024-01-01 10:00:02 dial tcp 10.0.0.5:443: connect: cannot assign requested address\n"
    )
    snapshot = last(text)
    assert [(e.kind, e.count, e.line) for e in snapshot.error_lines] == [
        (ErrorKind.DESCRIPTORS, 2, 2),
        (ErrorKind.LOCAL_PORTS, 1, 4),
    ]
    assert len(snapshot.sockets) == 1


def test_prose_without_an_error_and_without_rows_is_still_unreadable() -> None:
    with pytest.raises(InputError, match="no TCP socket table found"):
        read_paste(["the server ran out of something, please help"], "paste")


# --- the descriptor finding ------------------------------------------------------------------------


def _emfile(count: int = 1) -> ErrorLine:
    return ErrorLine(ErrorKind.DESCRIPTORS, "accept4: too many open files", count, 7)


def test_the_error_line_of_the_one_process_a_paste_names_is_its_ran_out_of_descriptors() -> None:
    findings = diagnose(last(corpus("github-proxysql-663")))
    (found,) = findings
    assert (found.code, found.severity, found.state, found.subject.pid) == (
        "fd-exhausted-logged",
        Severity.CRITICAL,
        None,
        26768,
    )
    evidence = {e.name: e.value for e in found.evidence}
    assert str(evidence["error_line"]).endswith("socketpair: Too many open files")


def test_with_several_processes_the_error_line_is_nobodys_in_particular() -> None:
    snap = snapshot(
        sock("ESTABLISHED", "10.0.0.1:80", "10.0.0.9:5000", pids=(10,)),
        processes=[process(10, "web"), process(11, "worker")],
    )
    snap = replace(snap, error_lines=(_emfile(),))
    (found,) = by_code(diagnose(snap), "fd-exhausted-logged")
    assert found.severity is Severity.CRITICAL
    assert found.subject.kind is SubjectKind.HOST
    assert any(text.startswith("which process ran out") for text in found.unchecked)


def test_without_the_error_line_a_process_with_no_limit_known_has_no_descriptor_finding() -> None:
    snap = snapshot(processes=[process(10, "web", open_fds=13141)])
    assert by_code(diagnose(snap), "fd-exhausted-logged") == []
    assert by_code(diagnose(snap), "fd-limit-near") == []


def test_the_error_line_takes_the_place_of_the_near_limit_finding_of_the_same_process() -> None:
    near = snapshot(processes=[process(10, "web", open_fds=1000, soft_limit=1024)])
    assert [f.code for f in diagnose(near)] == ["fd-limit-near"]
    logged = replace(near, error_lines=(_emfile(),))
    (found,) = diagnose(logged)
    assert found.code == "fd-exhausted-logged" and found.subject.pid == 10
    evidence = {e.name: e.value for e in found.evidence}
    assert (evidence["open_fds"], evidence["fd_soft_limit"]) == (1000, 1024)


# --- piles of descriptors the error line shows doing harm ------------------------------------------


def _closed_count(count: int) -> ReportedCount:
    return ReportedCount(TcpState.CLOSE, count, count, "netstat -an -p tcp | grep -c CLOSED")


def test_a_host_wide_count_of_closed_sockets_is_critical_beside_the_emfile_line() -> None:
    # sockjs-node#99: 14590 CLOSED in a uniq -c histogram and "died with accept EMFILE"
    findings = diagnose(last(corpus("github-sockjs-node-99")))
    (closed,) = by_code(findings, "close-counted")
    assert (closed.severity, closed.count) == (Severity.CRITICAL, 14590)
    assert "error_line" in {e.name for e in closed.evidence}
    # without the line, the same host-wide count warns: whose pile it is is not known
    alone = replace(snapshot(), reported=(_closed_count(14590),))
    (warned,) = by_code(diagnose(alone), "close-counted")
    assert warned.severity is Severity.WARNING


def test_the_emfile_line_does_not_raise_a_pile_below_the_critical_level() -> None:
    snap = replace(snapshot(), reported=(_closed_count(200),), error_lines=(_emfile(),))
    (closed,) = by_code(diagnose(snap), "close-counted")
    assert closed.severity is Severity.WARNING
    assert "error_line" not in {e.name for e in closed.evidence}


# --- EADDRNOTAVAIL ------------------------------------------------------------------------------


def _no_port() -> ErrorLine:
    return ErrorLine(
        ErrorKind.LOCAL_PORTS,
        "dial tcp 10.0.0.5:443: connect: cannot assign requested address",
        3,
        12,
    )


def _time_wait_count(count: int) -> ReportedCount:
    return ReportedCount(TcpState.TIME_WAIT, count, count, "netstat -an | grep -c TIME_WAIT")


def test_a_time_wait_count_that_warns_is_critical_beside_a_no_free_port_line() -> None:
    counted = replace(snapshot(), reported=(_time_wait_count(3481),))
    (warned,) = by_code(diagnose(counted), "time-wait-counted")
    assert warned.severity is Severity.WARNING
    logged = replace(counted, error_lines=(_no_port(),))
    findings = diagnose(logged)
    (raised,) = by_code(findings, "time-wait-counted")
    assert raised.severity is Severity.CRITICAL
    assert "already found none free" in raised.summary
    # the TIME_WAIT finding carries the line: no finding of the line alone beside it
    assert by_code(findings, "ports-unavailable-logged") == []


def test_listed_time_wait_toward_one_destination_is_critical_beside_the_line() -> None:
    # 16,000 of the default range's 28,232 ports: over half (warn), under 90% (critical)
    rows = many(16000, lambda n: sock("TIME_WAIT", f"10.0.0.1:{32768 + n}", "10.0.0.5:443"))
    listed = snapshot(rows)
    (warned,) = by_code(diagnose(listed), "time-wait-ports-exhausting")
    assert warned.severity is Severity.WARNING
    logged = replace(listed, error_lines=(_no_port(),))
    (raised,) = by_code(diagnose(logged), "time-wait-ports-exhausting")
    assert raised.severity is Severity.CRITICAL
    assert "error_line" in {e.name for e in raised.evidence}


def test_the_no_free_port_line_alone_warns_and_says_what_tells_its_cause() -> None:
    snap = snapshot(sock("ESTABLISHED", "10.0.0.1:40000", "10.0.0.5:443", pids=(5,)))
    logged = replace(snap, error_lines=(_no_port(),))
    (found,) = by_code(diagnose(logged), "ports-unavailable-logged")
    assert (found.severity, found.state, found.subject.kind) == (
        Severity.WARNING,
        None,
        SubjectKind.HOST,
    )
    assert found.unchecked and "port range" in found.unchecked[0]
    assert by_code(diagnose(snap), "ports-unavailable-logged") == []


# --- prompts with wrappers, lsof -p, and what a grepped word names -----------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (
            "# docker exec clair netstat|grep registry|grep ESTABLISHED|wc -l",
            "docker exec clair netstat|grep registry|grep ESTABLISHED|wc -l",
        ),
        ("$ docker exec -it web ss -tan", "docker exec -it web ss -tan"),
        (
            "$ kubectl exec -n shop cart-7d9 -- ss -tanp",
            "kubectl exec -n shop cart-7d9 -- ss -tanp",
        ),
        ("# ip netns exec blue ss -tan", "ip netns exec blue ss -tan"),
        ("# nsenter -t 4242 -n ss -tan", "nsenter -t 4242 -n ss -tan"),
        ("# date && lsof -p 26768 |wc -l", "date && lsof -p 26768 |wc -l"),
    ],
)
def test_a_command_run_through_a_wrapper_is_still_a_prompt(line: str, command: str) -> None:
    prompt = match_prompt(line)
    assert prompt is not None and prompt.command == command


@pytest.mark.parametrize(
    "line",
    [
        "# docker exec failed, so I used nsenter",
        "# date is wrong on this host",
        "# kubectl exec into the pod first",
    ],
)
def test_a_comment_that_mentions_a_wrapper_is_not_a_prompt(line: str) -> None:
    found = match_prompt(line)
    assert found is None or not found.command.startswith(("date", "kubectl", "docker")), found


def test_a_count_through_docker_exec_is_the_pastes_own_count() -> None:
    # harbor#2954: '# docker exec clair netstat|grep registry|grep ESTABLISHED|wc -l' -> 5859
    snapshot = last(corpus("github-harbor-2954"))
    assert [(c.state, c.count, c.selects, c.pids) for c in snapshot.reported] == [
        (TcpState.ESTABLISHED, 5859, "registry", ())
    ]


def test_a_word_grepped_from_netstat_without_p_is_no_program() -> None:
    (without,) = count_parts("netstat -tn | grep registry | grep -c ESTABLISHED", {})
    (with_p,) = count_parts("netstat -tnp | grep registry | grep -c ESTABLISHED", {})
    assert without is not None and with_p is not None
    assert (without.program, with_p.program) == (None, "registry")
    assert without.selects == with_p.selects == "registry"


# --- counts of no one state -------------------------------------------------------------------------


def test_counts_of_no_one_state_are_read_and_said_and_only_their_growth_judged() -> None:
    # beaker_extensions#6: 'netstat -tn|grep 6379|wc -l' -> 6008, then 8009. The counts mix
    # every state, so they are no state's count (reported_states stays empty); their rise is
    # the reported rule's count-growing (tests/test_paste_piles.py has its wording).
    snapshot = last(corpus("github-beaker-extensions-6"))
    assert snapshot.sockets == () and snapshot.state_counts == {}
    (count,) = snapshot.reported
    assert (count.state, count.count, count.earlier, count.selects) == (None, 8009, (6008,), "6379")
    (note,) = [n for n in snapshot.notes if "6379" in n]
    assert "6,008, then 8,009" in note and "any state" in note
    assert "no rule judges" not in note
    assert [(f.code, f.severity, f.state) for f in diagnose(snapshot)] == [
        ("count-growing", Severity.WARNING, None)
    ]


def test_a_command_without_its_count_is_not_an_input() -> None:
    with pytest.raises(InputError):
        read_paste(["netstat -tn|grep 6379|wc -l"], "paste")


# --- EADDRINUSE beside TIME_WAIT -----------------------------------------------------------------


def test_an_address_in_use_beside_time_wait_is_a_bind_blocked_by_it() -> None:
    # the ramen26 blog post: WSAEADDRINUSE, then Windows netstat under a Japanese header with one
    # TIME_WAIT on the client's own chosen source port
    snapshot = last(corpus("blog-ramen26-hatena"))
    assert [s.state for s in snapshot.sockets] == [TcpState.TIME_WAIT]
    assert [(e.kind, e.count, e.line) for e in snapshot.error_lines] == [
        (ErrorKind.ADDRESS_IN_USE, 2, 2)
    ]
    (found,) = diagnose(snapshot)
    assert (found.code, found.severity, found.state, found.count) == (
        "time-wait-blocks-bind",
        Severity.WARNING,
        TcpState.TIME_WAIT,
        1,
    )
    assert found.subject.endpoint == "local port 52202"
    # Windows steps for a Windows paste
    assert all("findstr" in step for step in found.next_steps)


def test_an_address_in_use_without_time_wait_or_time_wait_without_it_is_no_such_finding() -> None:
    in_use = ErrorLine(ErrorKind.ADDRESS_IN_USE, "bind: address already in use", 1, 3)
    waiting = snapshot(sock("TIME_WAIT", "10.0.0.1:7000", "10.0.0.5:443"))
    assert by_code(diagnose(waiting), "time-wait-blocks-bind") == []
    listening = snapshot(sock("LISTEN", "0.0.0.0:7000"), processes=[process(3, "app")])
    assert (
        by_code(diagnose(replace(listening, error_lines=(in_use,))), "time-wait-blocks-bind") == []
    )
    (found,) = by_code(diagnose(replace(waiting, error_lines=(in_use,))), "time-wait-blocks-bind")
    assert found.subject.endpoint == "local port 7000"
