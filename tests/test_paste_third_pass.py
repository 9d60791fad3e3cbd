"""Readings the third blind corpus pass of issue #22 showed missing: a per-state histogram
printed alone (``| sort | uniq -c``), FreeBSD's ``netstat -L`` listener table, a prompt inside
a markdown indented code block, BSD's ``CLOSED`` in a grep, and the HTML a tracker's import left
around each line. The real shapes are the corpus files they were found in
(fixtures/realworld/threads/); each is paired with a near miss that must keep its old reading."""

# ruff: noqa: E501 -- rows are kept as wide as the tools print them

from __future__ import annotations

from tcphealth.diagnose import diagnose
from tcphealth.model import Severity, Snapshot, TcpState
from tcphealth.sources.text.lines import grep_state, histogram_selection
from tcphealth.sources.text.paste import _undo_posting
from tests.pastes import corpus, last


def codes(snapshot: Snapshot) -> list[tuple[str, Severity]]:
    return [(found.code, found.severity) for found in diagnose(snapshot)]


# --- a histogram printed alone ------------------------------------------------------------------


def test_a_histogram_printed_alone_is_the_pastes_own_count_with_its_selection() -> None:
    # fasthttp#534: 'netstat -tan | awk '$5 ~ /:8139/ {print $6}' | sort | uniq -c | sort -n'
    # then '      1 ESTABLISHED' and '  28230 TIME_WAIT': nearly every ephemeral port
    snapshot = last(corpus("github-fasthttp-534_netstat-awk"))
    assert [(c.state, c.count, c.selects) for c in snapshot.reported] == [
        (TcpState.ESTABLISHED, 1, ":8139"),
        (TcpState.TIME_WAIT, 28230, ":8139"),
    ]
    (found,) = diagnose(snapshot)
    assert (found.code, found.severity, found.state, found.count) == (
        "time-wait-counted",
        Severity.CRITICAL,
        TcpState.TIME_WAIT,
        28230,
    )


def test_histogram_lines_without_a_histogram_command_stay_a_summary() -> None:
    # fasthttp#534 after the fix: two uniq -c lines and no command above them
    snapshot = last(corpus("github-fasthttp-534_uniq-c-only"))
    assert snapshot.reported == ()
    assert snapshot.state_counts == {"ESTABLISHED": 14, "TIME_WAIT": 8}
    # the same lines under a command that counts something else (not ss or netstat)
    other = last("cat access.log | awk '{print $9}' | sort | uniq -c\n  28230 TIME_WAIT\n")
    assert other.reported == ()


def test_a_histogram_beside_a_listing_summarises_it_and_is_not_judged_as_a_count() -> None:
    text = (
        "# netstat -tan | awk '{print $6}' | sort | uniq -c\n"
        "   3000 TIME_WAIT\n"
        "# netstat -tan\n"
        "tcp        0      0 10.0.0.5:41000          10.0.0.9:80             TIME_WAIT\n"
    )
    snapshot = last(text)
    assert snapshot.reported == ()
    assert snapshot.state_counts["TIME_WAIT"] == 3000
    assert "time-wait-counted" not in [code for code, _ in codes(snapshot)]


def test_what_makes_a_command_a_histogram() -> None:
    cases = {
        "netstat -tan | awk '$5 ~ /:8139/ {print $6}' | sort | uniq -c | sort -n": ":8139",
        "netstat -ant | grep :443 | awk '{print $6}' | sort | uniq -c | sort -n": ":443",
        "netstat -n | awk '/^tcp/ {++S[$NF]} END {for(a in S) print a, S[a]}'": "",
        "ss -tan | grep -v LISTEN | awk '{print $1}' | sort | uniq -c": "",
        # near misses: no counting stage, a count of lines, not ss or netstat
        "netstat -tan | awk '{print $6}' | sort": None,
        "netstat -tan | grep TIME_WAIT | wc -l": None,
        "cat x | sort | uniq -c": None,
    }
    for command, selection in cases.items():
        assert histogram_selection(command) == selection, command


# --- FreeBSD's netstat -L -----------------------------------------------------------------------


def test_freebsd_netstat_listen_queues_are_listeners_with_their_queue_and_backlog() -> None:
    # logstash#3459: 'tcp4  76/0/50        XX.XX.XX.XX.5043' under 'Proto Listen  Local Address'
    snapshot = last(corpus("github-logstash-3459_"))
    (sock,) = snapshot.sockets
    assert (sock.state, sock.recv_queue, sock.listen_backlog) == (TcpState.LISTEN, 76, 50)
    assert (sock.local.name, sock.local.port) == ("XX.XX.XX.XX", 5043)
    (full, counted) = diagnose(snapshot)
    assert (full.code, full.severity, full.state) == (
        "listen-queue-full",
        Severity.CRITICAL,
        TcpState.LISTEN,
    )
    assert (counted.code, counted.count) == ("close-wait-counted", 76)


def test_a_listener_with_room_in_netstat_l_is_nothing_and_other_shapes_are_not_its_rows() -> None:
    header = (
        "Current listen queue sizes (qlen/incqlen/maxqlen)\nProto Listen         Local Address\n"
    )
    roomy = last(header + "tcp4  0/0/128        *.22\ntcp6  3/0/128        *.443\n")
    assert [(s.local.port, s.recv_queue, s.listen_backlog) for s in roomy.sockets] == [
        (22, 0, 128),
        (443, 3, 128),
    ]
    assert [code for code, _ in codes(roomy)] == []
    # near misses: two numbers only, a fourth column
    for row in ("tcp4  76/50        10.0.0.5.5043", "tcp4  76/0/50  10.0.0.5.5043  x"):
        assert not last(header + row + "\ntcp4  0/0/128        *.22\n").sockets[1:]


# --- a prompt inside an indented code block, and BSD's CLOSED ------------------------------------


def test_an_indented_prompt_gives_its_count_and_closed_is_the_close_state() -> None:
    # blocklist#37: '    # netstat -an | grep CLOSED | wc -l' then '       62254'
    snapshot = last(corpus("github-blocklist-37_"))
    assert [(c.state, c.count) for c in snapshot.reported] == [(TcpState.CLOSE, 62254)]


def test_an_indented_comment_is_still_prose_and_a_prefix_of_close_is_still_close_wait() -> None:
    assert grep_state("CLOSED") is TcpState.CLOSE
    assert grep_state("CLOSE") is TcpState.CLOSE_WAIT
    assert grep_state("CLOS") is TcpState.CLOSE_WAIT
    counted = last("    # netstat -an | grep CLOSE | wc -l\n       12\n")
    assert [(c.state, c.count) for c in counted.reported] == [(TcpState.CLOSE_WAIT, 12)]
    # '#' before words that are not a command we know stays a comment: its number counts nothing
    prose = last(
        "    # the netstat count below is from yesterday\n       12\n# ss -s\nTCP:   5 (estab 2, closed 1, orphaned 0, timewait 1)\n"
    )
    assert all(c.command == "ss -s" for c in prose.reported)


# --- HTML around each line ----------------------------------------------------------------------


def test_html_line_breaks_of_a_tracker_import_are_undone() -> None:
    # trafficcontrol#900 (JIRA): '<p>$ sudo netstat -tunp|grep traffic_stats|head <br/>' and
    # 'tcp 32 0 10.63.115.225:39667 10.63.115.224:443 CLOSE_WAIT  795/traffic_stats   <br/>'
    snapshot = last(corpus("github-trafficcontrol-900_"))
    assert len(snapshot.sockets) == 8
    assert {sock.pids for sock in snapshot.sockets} == {(795,)}
    assert [(p.pid, p.name) for p in snapshot.processes] == [(795, "traffic_stats")]


def test_only_html_at_the_ends_of_a_line_is_taken_away() -> None:
    cases = {
        "<p>$ sudo netstat -tunp|grep traffic_stats|head <br/>": "$ sudo netstat -tunp|grep traffic_stats|head",
        "tcp 1 0 10.0.0.1:5 10.0.0.2:443 CLOSE_WAIT  795/traffic_stats   <br/>": "tcp 1 0 10.0.0.1:5 10.0.0.2:443 CLOSE_WAIT  795/traffic_stats",
        "tcp 1 0 10.0.0.1:5 10.0.0.2:443 CLOSE_WAIT 795/x</p>": "tcp 1 0 10.0.0.1:5 10.0.0.2:443 CLOSE_WAIT 795/x",
        # near misses: a tag inside the line, a placeholder, lsof's arrow
        "tcp 0 0 <br/>:80 10.0.0.2:443 ESTABLISHED": None,
        "LISTEN 4097 4096 0.0.0.0:<listen_port>": None,
        "java 22664 u 570u IPv6 57747443 0t0 TCP localhost:8888->localhost:60836 (CLOSE_WAIT)": None,
    }
    for line, undone in cases.items():
        assert _undo_posting(line, line.strip()) == undone, line
