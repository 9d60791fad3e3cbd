"""``tcphealth watch``: on a terminal a view redrawn in place after every sample; into a pipe one
record per sample, written and flushed as it is made, so ``tcphealth watch | grep`` is live.

Piped records:

* ``plain``: the lines of the plain report (:mod:`tcphealth.render.plain`), each ending with
  `` sample=N`` so a line still says which look it belongs to once grep has picked it out.
* ``ndjson`` (and ``json``, which in a stream is the same thing): one JSON object per sample on
  one line, ``{"type": "sample", "sample": N, ...}`` with the whole report in it, and with
  ``--sockets`` every socket with its age.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.padding import Padding
from rich.text import Text

from tcphealth.phrases import plural
from tcphealth.render import plain
from tcphealth.render.environment import Environment
from tcphealth.render.json import dumps
from tcphealth.render.options import RenderOptions
from tcphealth.render.records import report_record, socket_record
from tcphealth.render.table import (
    finding_title,
    header,
    height_of,
    make_console,
    namespace_heading,
    owner_netns,
    owner_table,
    verdict_head,
    verdict_lines,
    where_text,
)
from tcphealth.render.text import inert, severity_counts
from tcphealth.report import Report

# The live view is fitted to the terminal's height, less this many lines: the line the
# cursor rests on after a redraw, so the terminal never scrolls the top away.
LIVE_MARGIN = 1


def sample_lines(report: Report, number: int, options: RenderOptions) -> Iterator[str]:
    """The plain records of one sample, each tagged with its sample number."""
    for line in plain.lines(report, options):
        yield f"{line} sample={number}"


def sample_record(report: Report, number: int, options: RenderOptions) -> dict[str, object]:
    record: dict[str, object] = {"type": "sample", "sample": number, **report_record(report)}
    if options.with_sockets:
        sockets = itertools.islice(report.sockets, options.socket_limit(table=False))
        record["sockets"] = [socket_record(report, sock) for sock in sockets]
    return record


def write_sample(
    report: Report, number: int, fmt: str, options: RenderOptions, env: Environment
) -> None:
    """One sample into a pipe or file, flushed at once."""
    out = env.stdout
    if fmt == "plain":
        for line in sample_lines(report, number, options):
            out.write(line + "\n")
    else:
        out.write(dumps(sample_record(report, number, options)) + "\n")
    out.flush()


def live_view(
    report: Report, number: int, status: str, console: Console, height: int | None = None
) -> RenderableType:
    """The whole screen for one sample, fitted to ``height`` lines (the console's if None):
    the header with the trend, the verdict (one line per finding), then as many whole blocks
    of detail as fit -- each finding's summary, the processes it is about with each group's
    age -- and a last line saying what was left out. Nothing is cut mid-sentence."""
    height = height or console.height
    parts: list[RenderableType] = [header(report), Text(status, style="dim"), Text()]
    parts.append(verdict_head(report))  # or that the filters matched nothing to judge
    # The verdict may take every line but the one saying what was left out.
    room = height - sum(height_of(console, part) for part in parts) - 1
    verdict = verdict_lines(report, room) if report.findings else []
    parts.extend(verdict)
    used = sum(height_of(console, part) for part in parts)

    # Several namespaces (a container host): each finding says where it is, and the processes
    # come namespace by namespace under a line naming it, as in the one-shot table.
    several = len(report.namespaces) > 1
    blocks: list[RenderableType] = []
    for finding in report.findings:
        lines: list[RenderableType] = [Text(), finding_title(finding)]
        where = where_text(finding) if several else None
        if where:
            lines.append(Padding(Text(inert(where), style="dim"), (0, 0, 0, 2)))
        lines.append(Padding(Text(inert(finding.summary)), (0, 0, 0, 2)))
        blocks.append(Group(*lines))
    owners = [owner for owner in report.processes if owner.findings]
    headed: set[int] = set()
    first = report.namespaces[0].inode if report.namespaces else 0
    by_inode = {namespace.inode: namespace for namespace in report.namespaces}
    if several:
        order = {namespace.inode: rank for rank, namespace in enumerate(report.namespaces)}
        owners.sort(key=lambda owner: order.get(owner_netns(owner, first), 0))
    for owner in owners:
        lines = [Text()]
        if several:
            inode = owner_netns(owner, first)
            if inode not in headed and inode in by_inode:
                headed.add(inode)
                lines.append(namespace_heading(by_inode[inode]))
        lines.append(owner_table(console, owner, show_all=False))
        blocks.append(Group(*lines))

    # The line saying what was left out takes the last line; a block goes in only whole.
    free = height - used - 1
    shown_findings = shown_owners = 0
    for index, block in enumerate(blocks):
        needed = height_of(console, block)
        if needed > free:
            break
        free -= needed
        parts.append(block)
        if index < len(report.findings):
            shown_findings += 1
        else:
            shown_owners += 1
    left_out: list[str] = []
    if shown_findings < len(report.findings):
        left_out.append(f"the detail of {plural(len(report.findings) - shown_findings, 'finding')}")
    if shown_owners < len(owners):
        hidden = len(owners) - shown_owners
        left_out.append(f"the sockets of {plural(hidden, 'process', 'processes')}")
    if left_out:
        line = Text(
            "not shown at this height: " + ", ".join(left_out),
            style="dim",
        )
        line.no_wrap, line.overflow = True, "ellipsis"
        parts.append(line)
    return Group(*parts)


class LiveScreen:
    """The terminal view: rich's Live, redrawn only when a sample arrives."""

    def __init__(self, env: Environment) -> None:
        self.console = make_console(env)
        self._live = Live(
            console=self.console,
            auto_refresh=False,
            transient=False,
            vertical_overflow="crop",
        )
        self._live.start()

    def show(self, report: Report, number: int, status: str) -> None:
        height = self.console.height - LIVE_MARGIN
        view = live_view(report, number, status, self.console, height)
        self._live.update(view, refresh=True)

    def note(self, text: str) -> None:
        """A note above the redrawn view: written straight to the terminal's stderr it would
        shift the view, and every later redraw would leave a copy of its top behind."""
        self._live.console.print(Text(inert(text), style="dim"))

    def stop(self) -> None:
        self._live.stop()


class PipedSamples:
    """Into a pipe or a file: each sample's records as they are made (:func:`write_sample`),
    and the notes on stderr."""

    def __init__(self, fmt: str, options: RenderOptions, env: Environment) -> None:
        self.fmt, self.options, self.env = fmt, options, env

    def show(self, report: Report, number: int, status: str) -> None:
        write_sample(report, number, self.fmt, self.options, self.env)

    def note(self, text: str) -> None:
        self.env.stderr.write(inert(text) + "\n")
        self.env.stderr.flush()

    def stop(self) -> None:
        pass


def watch_view(fmt: str, options: RenderOptions, env: Environment) -> LiveScreen | PipedSamples:
    """The view redrawn in place for a table (a terminal), else records into the pipe."""
    return LiveScreen(env) if fmt == "table" else PipedSamples(fmt, options, env)


def summary_line(taken: int, seconds: float, last: Report) -> str:
    """What ``watch`` says on stderr as it ends: how many samples over how long, and the
    counts and codes of the last."""
    codes = ", ".join(sorted({finding.code for finding in last.findings})) or "none"
    return (
        f"tcphealth: watch: {taken} sample{'s' if taken != 1 else ''} over {seconds:.1f} s; "
        f"in the last: {severity_counts(last.count_by_severity())} ({codes})"
    )


def status_line(number: int, count: int | None, interval: float, replay: bool, window: int) -> str:
    of = f"/{count}" if count else ""
    compared = f"; the last {window} compared" if number > window else ""
    if replay:
        return f"sample {number}{of} of a saved series{compared}"
    return f"sample {number}{of}, every {interval:g} s{compared}; Ctrl-C stops"


__all__ = [
    "LiveScreen",
    "PipedSamples",
    "sample_lines",
    "sample_record",
    "status_line",
    "summary_line",
    "watch_view",
    "write_sample",
]
