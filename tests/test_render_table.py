from __future__ import annotations

import io
import re
from dataclasses import replace

import pytest

from tcphealth.render import RenderOptions, View, render
from tcphealth.render.environment import Environment
from tcphealth.render.options import TABLE_GROUP_LIMIT, TABLE_SOCKET_LIMIT
from tcphealth.render.table import make_console
from tcphealth.render.watch import live_view
from tcphealth.report import Report, build_report
from tests.scenario_helpers import (
    leak_finding,
    leak_snapshot,
    output,
    proc,
    snap,
    sock,
    string_env,
)

ESCAPE = re.compile(r"\x1b\[")
LONG_V6_LOCAL = "[2001:db8:85a3::8a2e:370:7334]:443"
LONG_V6_REMOTE = "[2001:db8:ffff:1234:5678:9abc:def0:1]:52000"


def _table(report: Report, width: int = 100, **options: object) -> str:
    env = string_env(width)
    render(report, "table", RenderOptions(**options), env)  # type: ignore[arg-type]
    return output(env)


def test_report_at_width_100_exactly() -> None:
    text = _table(build_report(leak_snapshot(), [leak_finding()]))
    assert text.splitlines() == [
        "web-1  kernel 6.1.0  source procfs  2024-05-01 12:00:00 UTC",
        "6 sockets: TIME_WAIT 1, CLOSE_WAIT 3, LISTEN 2",
        "",
        "Verdict: 1 critical",
        "  CRITICAL close-wait-leak  pid 812 (java) 10.20.0.15:5432  3 sockets",
        "",
        "CRITICAL close-wait-leak  pid 812 (java) 10.20.0.15:5432  3 sockets in CLOSE_WAIT",
        "  java read the peer's FIN but never closed 3 connections.",
        "  blame       local application",
        "  evidence    recv_queue 0: read to EOF, close() never called",
        "  next        Find where java opens connections to 10.20.0.15:5432 without closing them.",
        "  not checked how long the sockets have been idle",
        "",
        "pid 812 java  user app  4 sockets  fds 311/65,536  CRITICAL close-wait-leak",
        "java -jar",
        "STATE       COUNT  LOCAL         REMOTE           RECV-Q  SEND-Q",
        "\u2500" * 64,
        "CLOSE_WAIT      3  10.0.0.5:*    10.20.0.15:5432       1       0",
        "LISTEN          1  0.0.0.0:8080  0.0.0.0:0         0/100       0",
        "",
        "1 other process with nothing wrong holds 1 socket: sshd (pid 611) (--all shows them)",
        "",
        "no process holds these  1 socket",
        "STATE      COUNT  LOCAL        REMOTE        RECV-Q  SEND-Q",
        "\u2500" * 59,
        "TIME_WAIT      1  10.0.0.5:80  192.0.2.40:*       0       0",
        "",
        "Verdict: 1 critical; worst: CRITICAL close-wait-leak  pid 812 (java) 10.20.0.15:5432",
    ]


def test_no_findings_says_so_and_all_shows_every_process() -> None:
    text = _table(build_report(leak_snapshot(), []), show_all=True)
    assert "\nVerdict: no problems found\n" in text
    assert text.endswith("\nVerdict: no problems found in 6 sockets\n")
    assert "pid 611 sshd  user root  1 socket" in text
    assert "nothing wrong" not in text


def test_an_empty_selection_is_not_called_healthy_first_or_last() -> None:
    # The verdict lines (#24) must keep #21's word: filters that matched nothing judged nothing.
    empty = replace(build_report(leak_snapshot(), []), empty_selection="--process javaa")
    for view in (View.REPORT, View.BRIEF):
        text = _table(empty, view=view)
        assert "no problems found" not in text
        assert text.endswith("\nVerdict: nothing to judge, no socket matched --process javaa\n")
    check = _table(empty, view=View.CHECK)
    assert "No socket matched --process javaa: nothing to judge." in check


def test_watch_live_view_of_an_empty_selection_says_nothing_was_judged() -> None:
    empty = replace(build_report(leak_snapshot(), []), empty_selection="--port 9")
    env = string_env(80)
    console = make_console(env)
    console.print(live_view(empty, 1, "sample 1", console, height=24))
    text = output(env)
    assert "Verdict: nothing to judge, no socket matched --port 9" in text
    assert "no problems found" not in text


def test_the_filter_label_widens_the_label_column_as_the_others_do() -> None:
    # A finding with no evidence and nothing unchecked: "filter" is its widest label, and the
    # next steps (printed apart from the grid) must line up with the grid's values.
    shown = replace(
        leak_finding(),
        evidence=(),
        unchecked=(),
        outside_filter=("2 of the 3 sockets it concerns lie outside the filter",),
    )
    text = _table(build_report(leak_snapshot(), [shown]), view=View.CHECK)
    lines = text.splitlines()
    blame = next(line for line in lines if line.startswith("  blame"))
    step = next(line for line in lines if line.startswith("  next"))
    flt = next(line for line in lines if line.startswith("  filter"))
    assert blame == "  blame  local application"
    assert step.index("Find where") == flt.index("2 of the 3") == blame.index("local")


def test_check_view_stops_after_the_findings() -> None:
    text = _table(build_report(leak_snapshot(), [leak_finding()]), view=View.CHECK)
    assert "close-wait-leak" in text
    assert "STATE" not in text and "pid 611" not in text


def test_markup_in_host_values_prints_as_itself() -> None:
    evil = proc(66, "[bold red]x", "[link=http://x]u")
    report = build_report(
        snap([sock("ESTABLISHED", "[fe80::1]:443", "[fe80::2]:50000", 66)], [evil]), []
    )
    text = _table(report, show_all=True)
    assert "pid 66 [bold red]x  user [link=http://x]u" in text
    assert "[fe80::1]:443" in text
    assert "[fe80::2]:*" in text


def test_escape_sequences_in_names_are_shown_inert() -> None:
    evil = proc(66, "x\x1b[2J\x07", "root", cmdline=("sh", "-c", "\x1b]0;pwned\x07"))
    report = build_report(snap([sock("LISTEN", "0.0.0.0:1", "0.0.0.0:0", 66)], [evil]), [])
    text = _table(report, show_all=True)
    assert "\x1b" not in text and "\x07" not in text
    assert "pid 66 x\\x1b[2J\\x07" in text
    assert "sh -c \\x1b]0;pwned\\x07" in text


@pytest.mark.parametrize("view", [View.REPORT, View.SOCKETS])
def test_an_ipv6_address_is_never_cut_at_80_columns(view: View) -> None:
    connection = sock("ESTABLISHED", LONG_V6_LOCAL, LONG_V6_REMOTE, 5, recv_queue=123456)
    report = build_report(snap([connection], [proc(5, "a-rather-long-process-name")]), [])
    text = _table(report, width=80, view=view, show_all=True)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert any(LONG_V6_LOCAL in line for line in lines)
    remote = LONG_V6_REMOTE if view is View.SOCKETS else "[2001:db8:ffff:1234:5678:9abc:def0:1]:*"
    assert any(remote in line for line in lines)
    assert "\u2026" not in text  # no ellipsis anywhere


def test_addresses_sit_side_by_side_when_they_fit() -> None:
    report = build_report(leak_snapshot(), [])
    text = _table(report, width=80, view=View.SOCKETS)
    assert "CLOSE_WAIT  10.0.0.5:40001  10.20.0.15:5432" in text


def test_a_narrow_terminal_gets_one_block_per_socket_with_each_address_on_its_own_line() -> None:
    connection = sock("ESTABLISHED", LONG_V6_LOCAL, LONG_V6_REMOTE, 5, recv_queue=7)
    report = build_report(snap([connection], [proc(5, "x")]), [])
    lines = _table(report, width=60, view=View.SOCKETS).splitlines()
    assert lines[3:] == [
        "ESTABLISHED  recv-q 7  send-q 0  timer -  process 5 x",
        f"  local  {LONG_V6_LOCAL}",
        f"  remote {LONG_V6_REMOTE}",
    ]


def test_addresses_fold_rather_than_truncate_when_nothing_else_fits() -> None:
    connection = sock("ESTABLISHED", LONG_V6_LOCAL, LONG_V6_REMOTE, 5)
    report = build_report(snap([connection], [proc(5, "x")]), [])
    text = _table(report, width=40, view=View.SOCKETS)
    assert "\u2026" not in text
    assert LONG_V6_LOCAL in text.splitlines()  # 34 characters fit on a line of their own
    assert "[2001:db8:ffff:1234:5678:9abc:def0:1]:52\n000" in text


def test_a_process_without_findings_is_summarised_unless_all() -> None:
    sockets = [
        sock("ESTABLISHED", f"10.0.0.5:{40000 + n}", f"10.9.0.{n}:5432", 5) for n in range(15)
    ]
    report = build_report(snap(sockets, [proc(5, "x")]), [])
    text = _table(report, show_all=False)
    # the process has no finding, so it is summarised; --all shows its table
    assert "1 process with nothing wrong holds 15 sockets: x (pid 5)" in text
    full = _table(report, show_all=True)
    assert full.count("ESTABLISHED      1") == 15


def test_process_table_rows_are_limited_without_all() -> None:
    sockets = [
        sock("CLOSE_WAIT", f"10.0.0.5:{40000 + n}", f"10.9.0.{n}:5432", 812) for n in range(15)
    ]
    report = build_report(snap(sockets, [proc(812, "java")]), [leak_finding()])
    text = _table(report)
    assert text.count("CLOSE_WAIT      1") == TABLE_GROUP_LIMIT
    assert "5 more rows not shown (--all shows them)" in text


def test_sockets_table_is_limited_with_a_note() -> None:
    sockets = [sock("TIME_WAIT", f"10.0.0.5:{20000 + n}", "198.51.100.20:443") for n in range(250)]
    report = build_report(snap(sockets), [])
    text = _table(report, view=View.SOCKETS)
    assert text.count("TIME_WAIT  ") == TABLE_SOCKET_LIMIT
    assert "50 more sockets not shown: --limit 0 shows all" in text
    assert _table(report, view=View.SOCKETS, limit=0).count("TIME_WAIT  ") == 250


def test_colour_only_when_the_environment_allows_it() -> None:
    report = build_report(leak_snapshot(), [leak_finding()])
    plain_env = string_env(80)
    render(report, "table", RenderOptions(), plain_env)
    assert not ESCAPE.search(output(plain_env))
    colour_env = string_env(80, color=True, tty=True)
    render(report, "table", RenderOptions(), colour_env)
    assert "\x1b[1;31mCRITICAL\x1b[0m" in output(colour_env)


def test_no_trailing_blanks() -> None:
    text = _table(build_report(leak_snapshot(), [leak_finding()]))
    assert all(line == line.rstrip() for line in text.splitlines())


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "environ", "tty", "color", "width", "default"),
    [
        (io.StringIO(), {}, False, False, 80, "plain"),
        (io.StringIO(), {"COLUMNS": "123"}, False, False, 123, "plain"),
        (FakeTerminal(), {"COLUMNS": "90"}, True, True, 90, "table"),
        (FakeTerminal(), {"COLUMNS": "90", "NO_COLOR": "1"}, True, False, 90, "table"),
        (FakeTerminal(), {"COLUMNS": "90", "NO_COLOR": ""}, True, True, 90, "table"),
        (FakeTerminal(), {"COLUMNS": "90", "TERM": "dumb"}, True, False, 90, "table"),
    ],
)
def test_environment_detection(
    stream: io.StringIO,
    environ: dict[str, str],
    tty: bool,
    color: bool,
    width: int,
    default: str,
) -> None:
    env = Environment.detect(stream, io.StringIO(), environ)
    assert (env.stdout_isatty, env.color, env.width, env.default_format) == (
        tty,
        color,
        width,
        default,
    )
