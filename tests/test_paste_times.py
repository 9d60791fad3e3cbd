"""A paste's capture time is what the paste prints before the capture (issue #21), never the
file's time: ``date`` output and prompts that carry a timestamp, used only where they fix an
instant (a date, a time and UTC/GMT/Z or a numeric offset).

The ``date`` lines below are real output of GNU coreutils 9.1 ``date`` (``date``, ``date -u``,
``-R``, ``-Is``, ``-Ins``, ``--rfc-3339=seconds``, ``-I``, with ``TZ=Asia/Shanghai``,
``TZ=America/Chicago`` and ``TZ=Europe/Istanbul``) on the machine these tests were written on;
BSD and macOS ``date`` print the same default form (tzcode's date(1): ``Wed Mar  8 14:54:40 EST
1989``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from tcphealth.cli import main
from tcphealth.model import Snapshot
from tcphealth.sources.text.paste import read_paste
from tcphealth.sources.text.stamps import Stamp, read_stamp, split_prompt_stamp

# 2026-12-07 02:42:52 UTC, the instant of every real line below
INSTANT = 1796611372.0


def read(text: str) -> list[Snapshot]:
    return read_paste(text.splitlines(), "paste", taken_at=1234.0)


@pytest.mark.parametrize(
    "line",
    [
        "Mon Dec  7 02:42:52 UTC 2026",  # date, date -u (GNU; BSD/macOS the same form)
        "Mon, 07 Dec 2026 02:42:52 +0000",  # date -R
        "2026-12-07T02:42:52+00:00",  # date -Is
        "2026-12-07T02:42:52,761736923+00:00",  # date -Ins (its fraction is kept to 1 µs)
        "2026-12-07 02:42:52+00:00",  # date --rfc-3339=seconds
        "2026-12-07T02:42:52Z",  # ISO 8601 in UTC
        "2026-12-07 02:42:52 UTC",
        "Mon Dec  7 05:42:52 +03 2026",  # TZ=Europe/Istanbul date: a zone with no name
        "2026-12-07T04:42:52+02:00",
        "Sun Dec  6 21:42:52 -0500 2026",
        # strftime with glibc en_US's date formats ('%a %d %b %Y %r %Z', and '%a %b %e %r %Z
        # %Y' since glibc 2.29), in UTC
        "Mon 07 Dec 2026 02:42:52 AM UTC",
        "Mon Dec  7 02:42:52 AM UTC 2026",
        "Mon Dec  7 02:42:52 am GMT 2026",
    ],
)
def test_a_date_line_with_utc_or_an_offset_fixes_the_instant(line: str) -> None:
    stamp = read_stamp(line)
    assert stamp is not None
    assert stamp.epoch is not None and int(stamp.epoch) == INSTANT, stamp
    assert stamp.why_not is None


def test_pm_and_the_fraction_of_a_second() -> None:
    assert read_stamp("Mon Dec  7 02:42:52 PM UTC 2026") == Stamp(
        "Mon Dec  7 02:42:52 PM UTC 2026", INSTANT + 12 * 3600
    )
    stamp = read_stamp("2026-12-07T02:42:52,761736923+00:00")
    assert stamp is not None and stamp.epoch == pytest.approx(INSTANT + 0.761736)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        # TZ=Asia/Shanghai date and TZ=America/Chicago date, real output: both say CST
        ("Mon Dec  7 10:42:52 CST 2026", "the zone CST is a name, not an offset"),
        ("Sun Dec  6 20:42:52 CST 2026", "the zone CST is a name, not an offset"),
        ("Mon Dec  7 03:42:52 CET 2026", "the zone CET is a name, not an offset"),
        ("2026-12-07 02:42:52", "no time zone"),  # a prompt's \D{%F %T}
        ("2026-12-07T02:42:52", "no time zone"),
        ("02:42:52", "a time of day without a date"),  # bash \t, zsh %*
        ("02:42:52 UTC", "a time of day without a date"),
        ("2026-12-07", "a date without a time of day"),  # date -I
    ],
)
def test_a_named_zone_no_zone_or_half_a_time_is_seen_but_refused(line: str, why: str) -> None:
    stamp = read_stamp(line)
    assert stamp is not None and stamp.epoch is None
    assert stamp.why_not is not None and stamp.why_not.startswith(why), stamp.why_not


@pytest.mark.parametrize(
    "line",
    [
        "1796611372",  # date +%s: a paste's lone numbers are counts
        "ESTAB 0 0 10.0.0.1:22 10.0.0.2:50000",
        "Tue Dec  7 02:42:52 UTC 2026",  # 7 December 2026 is a Monday: not date's output
        "Mon Feb 30 02:42:52 UTC 2026",  # no such day
        "Mon Dec  7 25:42:52 UTC 2026",
        "Foo Dec  7 02:42:52 UTC 2026",
        "2026-13-07T02:42:52Z",
        "Mon Dec  7 02:42:52 UTC 1066",  # no host printed that
        "2026-12-07T02:42:52+25:00",  # no zone is that far from UTC
        "State      Recv-Q Send-Q Local Address:Port  Peer Address:Port",
    ],
)
def test_lines_that_are_not_a_printed_time(line: str) -> None:
    assert read_stamp(line) is None


def test_a_prompt_that_starts_with_its_time() -> None:
    stamp, rest = split_prompt_stamp("[2026-12-07 02:42:52 UTC] root@web:~# ss -tan") or (None, "")
    assert stamp is not None and stamp.epoch == INSTANT
    assert rest == "root@web:~# ss -tan"
    stamp, rest = split_prompt_stamp("[02:42:52] root@web:~# ss -tan") or (None, "")
    assert stamp is not None and stamp.epoch is None and rest == "root@web:~# ss -tan"
    stamp, rest = split_prompt_stamp("2026-12-07T02:42:52Z $ ss -tan") or (None, "")
    assert stamp is not None and stamp.epoch == INSTANT and rest == "$ ss -tan"
    assert split_prompt_stamp("[web01] $ ss -tan") is None


TABLE = """\
State      Recv-Q Send-Q Local Address:Port  Peer Address:Port
ESTAB      0      0      10.0.0.1:22         10.0.0.2:50000
CLOSE-WAIT 1      0      10.0.0.1:8080       10.0.0.3:40000
"""


def test_date_before_the_table_is_the_capture_time() -> None:
    (snapshot,) = read(
        f"root@web:~# date -u\nMon Dec  7 02:42:52 UTC 2026\nroot@web:~# ss -tan\n{TABLE}"
    )
    assert (snapshot.host.taken_at, snapshot.host.taken_at_known) == (INSTANT, True)
    assert not any("capture time" in note for note in snapshot.notes)


def test_without_a_printed_time_the_capture_time_is_unknown() -> None:
    (snapshot,) = read(f"root@web:~# ss -tan\n{TABLE}")
    assert (snapshot.host.taken_at, snapshot.host.taken_at_known) == (1234.0, False)


def test_a_time_printed_after_the_table_is_not_its_time() -> None:
    (snapshot,) = read(
        f"root@web:~# ss -tan\n{TABLE}root@web:~# date\nMon Dec  7 02:42:52 UTC 2026\n"
    )
    assert snapshot.host.taken_at_known is False


def test_a_prompt_timestamp_with_an_offset_dates_the_command_on_its_line() -> None:
    (snapshot,) = read(f"[2026-12-07T04:42:52+02:00] root@web:~# ss -tan\n{TABLE}")
    assert (snapshot.host.taken_at, snapshot.host.taken_at_known, snapshot.host.hostname) == (
        INSTANT,
        True,
        "web",
    )
    assert len(snapshot.sockets) == 2  # the prompt is still read as one


def test_a_named_zone_leaves_the_time_unknown_and_says_which_line_and_why() -> None:
    (snapshot,) = read(f"$ date\nMon Dec  7 10:42:52 CST 2026\n$ ss -tan\n{TABLE}")
    assert snapshot.host.taken_at_known is False
    assert snapshot.host.taken_at == 1234.0
    (note,) = [note for note in snapshot.notes if "capture time" in note]
    assert note.startswith(
        "paste:2: capture time unknown: 'Mon Dec  7 10:42:52 CST 2026': the zone CST is a name"
    )


def test_a_prompt_time_of_day_alone_is_refused_with_its_line() -> None:
    (snapshot,) = read(f"[02:42:52] root@web:~# ss -tan\n{TABLE}")
    assert snapshot.host.taken_at_known is False
    assert any(
        note.startswith("paste:1: capture time unknown: '02:42:52': a time of day without a date")
        for note in snapshot.notes
    )


def series(times: list[str | None]) -> str:
    """A loop of ``date -Is; ss -tan`` (a ``None`` time: no date printed before that look)."""
    parts = []
    for printed in times:
        if printed is not None:
            parts.append(f"root@web:~# date -Is\n{printed}\n")
        parts.append(f"root@web:~# ss -tan\n{TABLE}")
    return "".join(parts)


def test_each_capture_gets_the_time_printed_before_it() -> None:
    snapshots = read(
        series(
            ["2026-12-07T02:42:52+00:00", "2026-12-07T02:43:02+00:00", "2026-12-07T04:43:12+02:00"]
        )
    )
    assert [(s.host.taken_at - INSTANT, s.host.taken_at_known) for s in snapshots] == [
        (0.0, True),
        (10.0, True),
        (20.0, True),
    ]


def test_a_time_dates_one_capture_only() -> None:
    # the second look printed no date: it was taken later than the first, not at its time
    snapshots = read(series(["2026-12-07T02:42:52+00:00", None]))
    assert [(s.host.taken_at, s.host.taken_at_known) for s in snapshots] == [
        (INSTANT, True),
        (1234.0, False),
    ]


# --- through the command line -------------------------------------------------------------------


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, [str(arg) for arg in args], env={"COLUMNS": "200"}, catch_exceptions=False
    )
    return result.exit_code, result.stdout, result.stderr


def write_old(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    os.utime(path, (1577923200, 1577923200))  # touch -d 2020-01-02: never the capture time
    return path


def test_cli_reports_the_printed_time_not_the_file_time(tmp_path: Path) -> None:
    paste = write_old(
        tmp_path / "paste.txt", f"$ date -R\nMon, 07 Dec 2026 02:42:52 +0000\n$ ss -tan\n{TABLE}"
    )
    code, out, _ = run("--from", paste, "--format", "json")
    host = json.loads(out)["host"]
    assert (code, host["taken_at"], host["taken_at_epoch"]) == (0, "2026-12-07T02:42:52Z", INSTANT)
    code, out, _ = run("--from", paste, "--format", "table", "--no-pager")
    assert code == 0 and "2026-12-07 02:42:52 UTC" in out.splitlines()[0]
    # without the date line: unknown, whatever the file's time
    write_old(paste, f"$ ss -tan\n{TABLE}")
    code, out, _ = run("--from", paste, "--format", "json")
    assert json.loads(out)["host"]["taken_at"] is None
    code, out, _ = run("--from", paste, "--format", "table", "--no-pager")
    assert "capture time unknown" in out.splitlines()[0] and "2020" not in out


CLOSE_WAIT_LOOK = "".join(
    f'CLOSE-WAIT 1 0 10.0.0.1:8080 10.0.0.3:{40000 + n} users:(("java",pid=77,fd={10 + n}))\n'
    for n in range(30)
)


def test_cli_diagnoses_dated_pasted_captures_as_a_series_with_their_intervals(
    tmp_path: Path,
) -> None:
    looks = "".join(
        f"$ date -u\nMon Dec  7 02:{minute}:52 UTC 2026\n$ ss -tanp\n{CLOSE_WAIT_LOOK}"
        for minute in ("42", "43", "44")
    )
    paste = write_old(tmp_path / "loop.txt", looks)
    code, out, _ = run("check", "--from", paste, "--format", "json")
    report = json.loads(out)
    assert code == 1
    assert report["series"]["samples"] == 3 and report["series"]["window_seconds"] == 120.0
    (finding,) = [f for f in report["findings"] if f["code"] == "close-wait-not-reading"]
    assert "stayed through the whole 120.0 s across 3 samples" in finding["summary"]
    # the same looks undated: the last one alone, which cannot tell a leak from a slow close
    paste = write_old(
        tmp_path / "undated.txt", looks.replace("$ date -u\n", "").replace(" UTC 2026", " CST 2026")
    )
    code, out, _ = run("check", "--from", paste, "--format", "json")
    report = json.loads(out)
    assert report["series"] is None
    (finding,) = [f for f in report["findings"] if f["code"] == "close-wait-not-reading"]
    assert "has not closed them yet" in finding["summary"] and "stayed" not in finding["summary"]
