"""The run's steps without the command line: where samples come from, the series-or-snapshot
decision, the watch loop, and the render registry for every kind of output."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from tcphealth import sources, states
from tcphealth.cli import main
from tcphealth.diagnose.config import Thresholds
from tcphealth.model import Snapshot, TcpState
from tcphealth.pipeline import Inputs, UsageConflict, diagnose_samples, follow
from tcphealth.render import OUTPUT_FORMATS, Environment, RenderOptions, View
from tcphealth.render.records import explanation_record
from tcphealth.render.watch import sample_lines
from tcphealth.report import thresholds_report
from tcphealth.sources import procfs

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SERIES = FIXTURES / "series" / "close-wait-leak.json"


def test_follow_gives_the_reports_watch_prints() -> None:
    samples = Inputs(from_file=str(SERIES)).load_series()
    assert len(samples) > 2  # more than the window, so the window matters
    options = RenderOptions(view=View.REPORT)
    lines = [
        line + "\n"
        for sample in follow(samples, window=2)
        for line in sample_lines(sample.report, sample.number, options)
    ]
    result = CliRunner().invoke(main, ["watch", "--from", str(SERIES), "--window", "2"])
    assert result.exit_code == 0
    assert "".join(lines) == result.stdout
    numbers = [sample.number for sample in follow(samples, window=2)]
    assert numbers == list(range(1, len(samples) + 1))


def test_follow_takes_no_sample_after_the_count() -> None:
    samples = Inputs(from_file=str(SERIES)).load_series()
    pulled: list[int] = []

    def counted() -> Iterator[Snapshot]:
        for number, snapshot in enumerate(samples, start=1):
            pulled.append(number)
            yield snapshot

    taken = [sample.number for sample in follow(counted(), count=2)]
    assert (taken, pulled) == ([1, 2], [1, 2])


def test_follow_says_each_kind_of_note_once() -> None:
    first, second, third = Inputs(from_file=str(SERIES)).load_series()[:3]
    noted = [
        replace(first, notes=("12 socket(s) are held by no process visible here",)),
        replace(second, notes=("13 socket(s) are held by no process visible here",)),
        replace(third, notes=("a new kind of note", "13 socket(s) are held by no process")),
    ]
    assert [sample.new_notes for sample in follow(noted)] == [
        ("12 socket(s) are held by no process visible here",),
        (),
        ("a new kind of note", "13 socket(s) are held by no process"),
    ]
    assert {sample.first_taken_at for sample in follow(noted)} == {first.host.taken_at}


def test_a_timed_series_is_diagnosed_with_time_and_captures_by_the_latest_alone() -> None:
    samples = Inputs(from_file=str(SERIES)).load_series()
    timed = diagnose_samples(samples, str(SERIES))
    assert timed.report.series is not None
    assert timed.noted is samples[-1]
    # The same capture twice (one time): not a series; the latest alone, with a note.
    pasted = [samples[0], samples[0]]
    alone = diagnose_samples(pasted, "paste.txt")
    assert alone.report.series is None
    assert alone.noted.notes[0] == (
        "paste.txt: 2 captures were found (a repeated header, command or '---'); "
        "only the last is diagnosed, the earlier ones compared with it (what stayed, what "
        "kept resending)"
    )


def test_options_that_cannot_go_together_are_a_usage_conflict() -> None:
    # With --from, --netns names a namespace of the snapshot; this series records none.
    with pytest.raises(
        UsageConflict, match=r"--netns lab: no such network namespace in .*\(it holds: none\)"
    ):
        Inputs(from_file=str(SERIES), netns="lab").load()
    with pytest.raises(UsageConflict, match="--samples looks at this host again"):
        Inputs(from_file=str(SERIES)).load_series(samples=2)


def test_sysctls_come_from_the_proc_tree_through_the_sources_facade(tmp_path: Path) -> None:
    assert sources.host_sysctls(tmp_path) is None  # no sys/net: not Linux, defaults assumed
    (tmp_path / "sys" / "net" / "ipv4").mkdir(parents=True)
    (tmp_path / "sys" / "net" / "ipv4" / "tcp_fin_timeout").write_text("17\n")
    (tmp_path / "sys" / "net" / "ipv4" / "ip_local_port_range").write_text("20000\t20999\n")
    read = sources.host_sysctls(tmp_path)
    assert read is not None
    assert (read.tcp_fin_timeout, read.ip_local_port_range) == (17, (20000, 20999))
    assert Inputs(proc_root=tmp_path).sysctls() == read
    if Path("/proc/sys/net").is_dir():
        assert sources.host_sysctls() == procfs.read_sysctls(Path("/proc"))


def _environment() -> Environment:
    return Environment(stdout=io.StringIO(), stderr=io.StringIO())


def _written(env: Environment) -> str:
    assert isinstance(env.stdout, io.StringIO)
    return env.stdout.getvalue()


@pytest.mark.parametrize("name", list(OUTPUT_FORMATS))
def test_every_format_renders_an_explanation_and_the_thresholds(name: str) -> None:
    explanation = states.explain(TcpState.CLOSE_WAIT, None)
    shown = thresholds_report(Thresholds(), None)
    env = _environment()
    OUTPUT_FORMATS[name].explanation(explanation, env)
    text = _written(env)
    env = _environment()
    OUTPUT_FORMATS[name].thresholds(shown, env)
    toml = _written(env)
    if name in ("json", "ndjson"):
        assert json.loads(text) == explanation_record(explanation)
        assert json.loads(toml)["source"] is None
        # json indented, ndjson one line each
        assert (text.count("\n") == 1, toml.count("\n") == 1) == ((name == "ndjson",) * 2)
    else:
        assert text == states.format_explanation(explanation, width=88)
        assert toml.startswith("# tcphealth thresholds: defaults (no tcphealth.toml or ")
        assert toml.endswith(shown.toml)


def test_a_filtered_series_shows_the_selection_s_states_over_the_samples() -> None:
    """The recorded leak grows 60 -> 75 -> 90 CLOSE_WAIT in pid 2200; filtered to pid 611
    (two listeners), the states over the samples are its own, steady, and no trend of the
    leak is shown under "filtered: pid=611"."""
    from tcphealth.filters import SocketFilter
    from tcphealth.pipeline import analyse_series

    samples = Inputs(from_file=str(SERIES)).load_series()
    report = analyse_series(samples, SocketFilter(pids=frozenset({611})))
    assert report.series is not None
    assert [dict(counts) for _, counts in report.series.state_history] == [{TcpState.LISTEN: 2}] * 3
    whole = analyse_series(samples)
    assert whole.series is not None
    assert [counts[TcpState.CLOSE_WAIT] for _, counts in whole.series.state_history] == [
        60,
        75,
        90,
    ]
    table = (
        CliRunner()
        .invoke(
            main,
            ["--from", str(SERIES), "--pid", "611", "--format", "table"],
            env={"COLUMNS": "100"},
        )
        .stdout
    )
    assert "3 samples over 20.0 s" in table
    assert "CLOSE_WAIT 60" not in table
