"""What posting a paste in a thread does to it, undone (issue #22, the second corpus pass):
markdown quotes around rows, markdown bold left inside a row, placeholders with blanks in
them, an ss table whose Peer column was cut off, and busybox's ``/app # `` prompt. The real
shapes are the corpus files they were found in (fixtures/realworld/threads/); each is paired
with a near miss that must keep its old reading."""

# ruff: noqa: E501 -- rows are kept as wide as the tools print them

from __future__ import annotations

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.errors import InputError
from tcphealth.model import Snapshot, TcpState
from tcphealth.sources.text.lines import match_prompt
from tcphealth.sources.text.paste import _undo_posting, read_paste
from tests.pastes import corpus, last


def states(snapshot: Snapshot) -> dict[str, int]:
    counted: dict[str, int] = {}
    for sock in snapshot.sockets:
        counted[sock.state.value] = counted.get(sock.state.value, 0) + 1
    return counted


# --- markdown quotes -------------------------------------------------------------------------------


def test_rows_quoted_with_a_markdown_quote_are_rows() -> None:
    # '> tcp 0 0 11.1.1.1:52736 11.1.1.4:6379 TIME_WAIT' and so on, quoted
    snapshot = last(corpus("github-fastnetmon-685_"))
    assert states(snapshot) == {"TIME_WAIT": 13}
    assert {sock.remote.port for sock in snapshot.sockets} == {2003, 6379}
    # the quoted '> .....' under them is still the listing's elision mark
    assert [f.code for f in diagnose(snapshot)] == ["listing-elided"]


def test_a_quoted_prompt_stays_a_prompt() -> None:
    # garmadon#17's '> ss -np|grep 33000|grep CLOSE-WAIT|wc -l' is a '>' prompt, not a quote:
    # its count is still read as the count of that command.
    snapshot = last(corpus("github-garmadon-17_"))
    assert [(c.state, c.count) for c in snapshot.reported] == [(TcpState.CLOSE_WAIT, 26358)]


def test_a_quoted_line_of_prose_is_still_prose() -> None:
    with pytest.raises(InputError, match="no TCP socket table found"):
        last("> the sockets are all in CLOSE_WAIT, please help\n")


# --- markdown bold and placeholders with blanks ---------------------------------------------------------


def test_bold_around_the_state_and_placeholders_with_blanks_keep_the_row() -> None:
    # classicswarm#1826: 'tcp 0 0 <server 1>:49682 <server 2>:2375 **ESTABLISHED **11947/swarm'
    snapshot = last(corpus("github-classicswarm-1826_"))
    (sock,) = snapshot.sockets
    assert sock.state is TcpState.ESTABLISHED
    assert (sock.local.name, sock.local.port) == ("<server_1>", 49682)
    assert (sock.remote.name, sock.remote.port) == ("<server_2>", 2375)
    assert sock.pids == (11947,)


def test_what_posting_did_is_undone_and_nothing_else() -> None:
    cases = {
        "tcp 0 0 <server 1>:49682 <server 2>:2375 **ESTABLISHED **11947/swarm": (
            "tcp 0 0 <server_1>:49682 <server_2>:2375 ESTABLISHED 11947/swarm"
        ),
        "> tcp 0 0 11.1.1.1:52736 11.1.1.4:6379 TIME_WAIT": "tcp 0 0 11.1.1.1:52736 11.1.1.4:6379 TIME_WAIT",
        # near misses: a '>' prompt, a redirect ('< in >' is two redirections, not a
        # placeholder), lsof's '->', a placeholder without blanks
        "> ss -np | grep 33000 | wc -l": None,
        "root@web:~# netstat -tan < in > out": None,
        "java 22664 u 570u IPv6 57747443 0t0 TCP localhost:8888->localhost:60836 (CLOSE_WAIT)": None,
        "LISTEN 4097 4096 0.0.0.0:<listen_port>": None,
    }
    for line, undone in cases.items():
        assert _undo_posting(line, line.strip()) == undone, line


# --- an ss table without its Peer column ---------------------------------------------------------------


def test_an_ss_listener_without_the_peer_column_and_with_a_hidden_port() -> None:
    # 'LISTEN  4097    4096    0.0.0.0:<listen_port>' under a header with no Peer column
    snapshot = last(corpus("github-slskd-1800_"))
    (sock,) = snapshot.sockets
    assert (sock.state, sock.recv_queue, sock.listen_backlog) == (TcpState.LISTEN, 4097, 4096)
    assert sock.local.port is None and sock.remote.is_unspecified
    (finding,) = diagnose(snapshot)
    assert (finding.code, finding.count) == ("listen-queue-full", 4097)
    assert "which port it listens on: the source does not show the port" in finding.unchecked


def test_a_connection_without_the_peer_column_keeps_an_unknown_peer() -> None:
    text = "State      Recv-Q Send-Q Local Address:Port\nCLOSE-WAIT 1      0      10.0.0.5:8080\n"
    (sock,) = last(text).sockets
    assert sock.state is TcpState.CLOSE_WAIT
    assert (sock.local.port, sock.remote.name, sock.remote.port) == (8080, "?", None)


def test_with_a_peer_column_a_row_missing_its_peer_is_still_refused() -> None:
    text = (
        "State  Recv-Q Send-Q Local Address:Port  Peer Address:Port\n"
        "LISTEN 0      128    0.0.0.0:22\n"
    )
    with pytest.raises(InputError, match="too few for queues and two endpoints"):
        read_paste(text.splitlines(), "paste", strict=True)


# --- busybox's prompt -------------------------------------------------------------------------


def test_a_busybox_prompt_gives_the_command_its_count() -> None:
    # '/app # netstat | grep ESTABLISHED | wc -l' -> 1009
    snapshot = last(corpus("github-venti-85_"))
    assert states(snapshot) == {"ESTABLISHED": 4}
    assert [(c.state, c.count) for c in snapshot.reported] == [(TcpState.ESTABLISHED, 1009)]


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/app # netstat | grep ESTABLISHED | wc -l", "netstat | grep ESTABLISHED | wc -l"),
        ("generic_x86:/ # netstat -an", "netstat -an"),
        ("~ # ss -tan", "ss -tan"),
        ("/etc/sysctl.conf # the limits we set", None),
        ("/ # uptime", None),
    ],
)
def test_busybox_prompts_are_prompts_only_before_a_command_we_know(
    line: str, command: str | None
) -> None:
    prompt = match_prompt(line)
    assert (prompt.command if prompt is not None else None) == command
