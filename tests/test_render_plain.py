from __future__ import annotations

import io
import re
from dataclasses import replace

import pytest

from tcphealth.model import Severity, SubjectKind, TcpState
from tcphealth.render import RenderOptions, View, plain, render
from tcphealth.render.environment import Environment
from tcphealth.report import build_report
from tests.scenario_helpers import (
    finding,
    leak_finding,
    leak_snapshot,
    output,
    proc,
    snap,
    sock,
    string_env,
)

FINDING_LINE = (
    "CRITICAL code=close-wait-leak state=CLOSE_WAIT count=3 pid=812 pids=812 "
    "process=java endpoint=10.20.0.15:5432 subject=process blame=local-application "
    'summary="java read the peer\'s FIN but never closed 3 connections." '
    'evidence="recv_queue=0 (read to EOF, close() never called)" '
    'next="Find where java opens connections to 10.20.0.15:5432 without closing them" '
    'unchecked="how long the sockets have been idle" netns=- container=- pod=- outside_filter=-'
)
GROUP_LINES = [
    "CLOSE_WAIT count=3 local=10.0.0.5:* remote=10.20.0.15:5432 peers=1 recv_q=1 send_q=0 "
    "backlog=- pid=812 process=java user=app age_s=- netns=- container=- pod=- unaccepted=0",
    "LISTEN count=1 local=0.0.0.0:8080 remote=0.0.0.0:0 peers=1 recv_q=0 send_q=0 "
    "backlog=100 pid=812 process=java user=app age_s=- netns=- container=- pod=- unaccepted=0",
    "LISTEN count=1 local=0.0.0.0:22 remote=0.0.0.0:0 peers=1 recv_q=0 send_q=0 "
    "backlog=128 pid=611 process=sshd user=root age_s=- netns=- container=- pod=- unaccepted=0",
    "TIME_WAIT count=1 local=10.0.0.5:80 remote=192.0.2.40:* peers=1 recv_q=0 send_q=0 "
    "backlog=- pid=- process=- user=- age_s=- netns=- container=- pod=- unaccepted=0",
]
TIME_WAIT_SOCKET_LINE = (
    "TIME_WAIT local=10.0.0.5:80 remote=192.0.2.40:49200 recv_q=0 send_q=0 backlog=- "
    "timer=timewait timer_s=12.5 retrans=- pid=- process=- uid=- inode=0 owner=none "
    "truncated=no age_s=- netns=- container=- pod=-"
)


def _render(view: View = View.REPORT, **options: bool) -> list[str]:
    report = build_report(leak_snapshot(), [leak_finding()])
    env = string_env(width=40)  # the width must not matter
    render(report, "plain", RenderOptions(view=view, **options), env)
    return output(env).splitlines()


def test_report_is_the_findings_then_one_line_per_group() -> None:
    assert _render() == [FINDING_LINE, *GROUP_LINES]


def test_check_prints_only_the_findings() -> None:
    assert _render(View.CHECK) == [FINDING_LINE]


def test_sockets_view_prints_one_line_per_socket_in_snapshot_order() -> None:
    lines = _render(View.SOCKETS)
    assert [line.split()[0] for line in lines] == [
        "LISTEN",
        "CLOSE_WAIT",
        "CLOSE_WAIT",
        "CLOSE_WAIT",
        "LISTEN",
        "TIME_WAIT",
    ]
    assert lines[-1] == TIME_WAIT_SOCKET_LINE


def test_with_sockets_appends_the_socket_lines_to_the_report() -> None:
    lines = _render(with_sockets=True)
    assert lines[: 1 + len(GROUP_LINES)] == [FINDING_LINE, *GROUP_LINES]
    assert lines[-1] == TIME_WAIT_SOCKET_LINE
    assert len(lines) == 1 + len(GROUP_LINES) + 6


def test_grep_for_a_state_gives_whole_records_with_state_addresses_and_process() -> None:
    matching = [line for line in _render(with_sockets=True) if "CLOSE_WAIT" in line]
    assert len(matching) == 5  # the finding, the group, three sockets
    for line in matching:
        assert "CLOSE_WAIT" in line
        assert "10.20.0.15:5432" in line
        assert re.search(r"\bprocess=java\b", line)


def test_every_field_is_present_in_a_fixed_order() -> None:
    keys = [[word.split("=", 1)[0] for word in line.split()[1:]] for line in _render(View.SOCKETS)]
    assert all(line_keys == keys[0] for line_keys in keys)
    assert keys[0] == [
        "local", "remote", "recv_q", "send_q", "backlog", "timer", "timer_s", "retrans",
        "pid", "process", "uid", "inode", "owner", "truncated", "age_s",
        "netns", "container", "pod",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (None, "-"),
        (0, "0"),
        (12.5, "12.5"),
        (3.0, "3"),
        ("java", "java"),
        ("", '""'),
        ("-", '"-"'),
        ("Web Content", '"Web Content"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("back\\slash", '"back\\\\slash"'),
        ("two\nlines", '"two\\nlines"'),
        ("\x1b[31mred", '"\\x1b[31mred"'),
        ("bidi\u202eevil", '"bidi\\u202eevil"'),
        ("[bold red]x", '"[bold red]x"'),
        ("[fe80::1]:443", "[fe80::1]:443"),
    ],
)
def test_values_are_escaped_so_one_record_stays_one_line(raw: object, shown: str) -> None:
    assert plain.value(raw) == shown


def test_hostile_process_names_stay_on_one_line_and_inert() -> None:
    hostile = proc(66, "evil\nCRITICAL fake\x1b[2J", "root")
    report = build_report(
        snap([sock("ESTABLISHED", "10.0.0.5:41000", "192.0.2.9:443", 66)], [hostile]), []
    )
    env = string_env()
    render(report, "plain", RenderOptions(), env)
    lines = output(env).splitlines()
    assert lines == [
        "ESTABLISHED count=1 local=10.0.0.5:* remote=192.0.2.9:443 peers=1 recv_q=0 send_q=0 "
        'backlog=- pid=66 process="evil\\nCRITICAL fake\\x1b[2J" user=root age_s=- '
        "netns=- container=- pod=- unaccepted=0"
    ]
    assert "\x1b" not in output(env)


def test_several_holders_are_listed_with_commas() -> None:
    shared = sock("LISTEN", "0.0.0.0:80", "0.0.0.0:0", 700, 701)
    report = build_report(snap([shared], [proc(700, "nginx"), proc(701, "nginx")]), [])
    assert " pid=700,701 process=nginx " in plain.socket_line(report, shared)


def test_a_finding_without_state_or_process_still_has_every_field() -> None:
    host_wide = finding("tw-buckets", Severity.WARNING, None, kind=SubjectKind.HOST)
    line = plain.finding_line(host_wide)
    assert line == (
        "WARNING code=tw-buckets state=- count=1 pid=- pids=- process=- endpoint=- "
        'subject=host blame=local-application summary="Something is wrong." evidence=- next=- '
        "unchecked=- netns=- container=- pod=- outside_filter=-"
    )


def test_output_streams_line_by_line() -> None:
    class CountingStream(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            CountingStream.writes += 1
            return super().write(text)

    sockets = [
        sock("TIME_WAIT", f"10.0.0.5:{10000 + index}", "198.51.100.20:443") for index in range(500)
    ]
    stream = CountingStream()
    env = Environment(stdout=stream, stderr=io.StringIO())
    render(build_report(snap(sockets), []), "plain", RenderOptions(view=View.SOCKETS), env)
    assert CountingStream.writes == 500
    assert stream.getvalue().count("\n") == 500


def test_limit_applies_to_plain_only_when_given() -> None:
    sockets = [sock("LISTEN", f"0.0.0.0:{port}", "0.0.0.0:0") for port in range(1, 301)]
    report = build_report(snap(sockets), [])
    every = string_env()
    render(report, "plain", RenderOptions(view=View.SOCKETS), every)
    assert len(output(every).splitlines()) == 300
    limited = string_env()
    render(report, "plain", RenderOptions(view=View.SOCKETS, limit=7), limited)
    assert len(output(limited).splitlines()) == 7


def test_state_names_are_canonical() -> None:
    line = plain.socket_line(
        build_report(snap(), []), sock(TcpState.FIN_WAIT2, "10.0.0.5:1", "10.0.0.6:2")
    )
    assert line.startswith("FIN_WAIT2 ")


def test_next_steps_written_as_sentences_join_without_a_period_before_the_semicolon() -> None:
    steps = (
        "ss -tnp state close-wait   # who holds them",
        "Find the error branch that skips close().",
        "Restarting only clears the symptom.",
    )
    line = plain.finding_line(replace(finding("x", Severity.WARNING), next_steps=steps))
    assert (
        ' next="ss -tnp state close-wait   # who holds them; Find the error branch that skips '
        'close(); Restarting only clears the symptom" '
    ) in line
