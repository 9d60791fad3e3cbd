"""Rich tables for a person at a terminal: the findings on top, then a table per process.

Two rich traps are avoided here on purpose. Every value that comes from the host is a
``rich.text.Text`` made by :func:`inert`, never a string rich would parse as markup (a process
named ``[bold red]x`` stays that text, an address ``[fe80::1]:443`` keeps its brackets). And no
address is ever cut: a table with local and remote side by side is used only when it fits the
width without breaking an address; otherwise the two are stacked in one column, and only when
even that does not fit are they folded over lines (never truncated with an ellipsis).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from tcphealth.model import Finding, NetNamespace, Severity, Socket, TcpState, TimerKind
from tcphealth.phrases import plural
from tcphealth.render.environment import Environment
from tcphealth.render.options import TABLE_GROUP_LIMIT, RenderOptions, View
from tcphealth.render.text import (
    age_text,
    count_text,
    endpoint_text,
    inert,
    severity_counts,
    utc_text,
)
from tcphealth.report import OwnerSummary, Report, SocketGroup

SEVERITY_STYLE: dict[Severity, str] = {
    Severity.CRITICAL: "bold red",
    Severity.WARNING: "bold yellow",
    Severity.INFO: "cyan",
    Severity.OK: "green",
}
QUIET_NAMES_SHOWN = 8  # processes named in the "nothing wrong" line
NAMESPACES_NAMED = 8  # network namespaces named in the header
TREND_SAMPLES = 6  # samples whose per-state counts the header shows, newest last
CMDLINE_SHOWN = 200  # characters of a command line shown under the process title


def make_console(env: Environment) -> Console:
    """A console that writes to the environment's stdout and decides nothing by itself."""
    return Console(
        file=env.stdout,
        width=env.width,
        height=env.height,
        color_system="auto" if env.color else None,
        force_terminal=env.color,
        no_color=not env.color,
        markup=False,
        emoji=False,
        highlight=False,
        soft_wrap=False,
    )


def _t(value: object, style: str = "") -> Text:
    """A host value as inert text (never markup, never a control sequence)."""
    return Text(inert("-" if value is None else str(value)), style=style)


# --- the header --------------------------------------------------------------------------------


def header(report: Report) -> Text:
    host = report.host
    text = Text()
    text.append(inert(host.hostname or "unknown host"), style="bold")
    if host.kernel:
        text.append(f"  kernel {inert(host.kernel)}")
    text.append(f"  source {inert(host.source)}")
    text.append(f"  {utc_text(host.taken_at)}" if host.taken_at_known else "  capture time unknown")
    text.append("\n")
    text.append(plural(report.socket_count, "socket"), style="bold")
    if report.states:
        text.append(": " + ", ".join(f"{s.value} {n:,}" for s, n in report.states.items()))
    if report.reported_states:
        counts = ", ".join(f"{inert(k)} {n:,}" for k, n in report.reported_states.items())
        text.append(f"\nthe source's summary also counts (not listed): {counts}", style="dim")
    if report.truncated_sockets:
        text.append(
            f"\n{plural(report.truncated_sockets, 'socket')} printed with an address cut short "
            "by the tool: their ports may be wrong",
            style="dim",
        )
    if report.skipped_lines:
        text.append(
            f"\n{plural(report.skipped_lines, 'input line')} could not be read and "
            "were left out (the notes on stderr name them)",
            style="yellow",
        )
    if report.namespaces:
        text.append("\n")
        text.append_text(namespaces_text(report))
    if report.filters:
        text.append("\nfiltered: " + inert(" ".join(report.filters)), style="dim")
    if report.series is not None:
        text.append("\n")
        text.append_text(series_text(report))
    return text


def namespaces_text(report: Report) -> Text:
    """``3 network namespaces (host, lab, pod:shop/web), 2 containers``."""
    labels = [inert(namespace.label) for namespace in report.namespaces]
    shown = ", ".join(labels[:NAMESPACES_NAMED]) + (
        f" and {len(labels) - NAMESPACES_NAMED:,} more" if len(labels) > NAMESPACES_NAMED else ""
    )
    noun = "network namespace" if len(labels) == 1 else "network namespaces"
    return Text(
        f"{len(labels):,} {noun} ({shown}), {plural(report.container_count, 'container')}",
        style="dim",
    )


def series_text(report: Report) -> Text:
    """What several samples showed: how many over how long, each state's count over them,
    the counters that rose."""
    series = report.series
    text = Text()
    if series is None:
        return text
    text.append(
        f"{plural(series.samples, 'sample')} over {series.window_seconds:.1f} s", style="bold"
    )
    history = series.state_history[-TREND_SAMPLES:]
    shown_states = [state for state in report.states if state is not TcpState.LISTEN]
    for state in shown_states:
        counts = [counts.get(state, 0) for _, counts in history]
        if len(set(counts)) > 1:
            trend = " \u2192 ".join(f"{count:,}" for count in counts)
            text.append(f"\n  {state.value} {trend}")
    for delta in series.counter_deltas:
        if delta.delta:
            text.append(
                f"\n  {delta.name} +{delta.delta:,} ({delta.per_second:.1f}/s): {delta.meaning}",
                style="dim",
            )
    return text


# --- findings ----------------------------------------------------------------------------------


def _evidence_text(finding: Finding) -> list[Text]:
    items: list[Text] = []
    for item in finding.evidence:
        shown = "unknown" if item.value is None else str(item.value)
        line = f"{item.name} {shown}" + (f": {item.detail}" if item.detail else "")
        items.append(_t(line))
    return items


def finding_title(finding: Finding, with_state: bool = True) -> Text:
    """``CRITICAL close-wait-leak  pid 812 (java)  300 sockets in CLOSE_WAIT``; without
    ``in CLOSE_WAIT`` for a verdict line, where the code says as much and room is short."""
    title = Text()
    title.append(finding.severity.label, style=SEVERITY_STYLE[finding.severity])
    title.append(" ")
    title.append(inert(finding.code), style="bold")
    title.append("  " + inert(finding.subject.describe()))
    # A host-wide limit counted in something other than sockets (pages, conntrack entries,
    # SYNs since boot) has count 0 and its numbers in the evidence: no "0 sockets" title.
    counted = count_text(finding, with_state)
    if counted:
        title.append("  " + counted)
    return title


def label_width(finding: Finding) -> int:
    """The label column of a finding's details and the gap after it: as wide as the widest
    label it has ("evidence", and "not checked" only when something was not)."""
    labels = ["blame", "evidence" if finding.evidence else "", "next" if finding.next_steps else ""]
    if finding.unchecked:
        labels.append("not checked")
    if finding.outside_filter:
        labels.append("filter")
    return max(len(label) for label in labels) + 1


# Between a command and its comment in a next step: `ls /proc/812/fd | wc -l   # descriptors`.
COMMENT_MARK = "   # "


def is_command(step: str) -> bool:
    """A next step to be typed rather than read: a command line starts with the name of a
    program (lower case), or carries a ``   # comment``. Sentences start with a capital."""
    return COMMENT_MARK in step or step[:1].islower()


def _details(finding: Finding, rows: Sequence[tuple[str, Sequence[Text]]]) -> Table:
    details = Table.grid(padding=(0, 1))
    details.add_column(style="dim", no_wrap=True, min_width=label_width(finding) - 1)
    details.add_column(overflow="fold")
    for label, values in rows:
        for index, shown in enumerate(values):
            details.add_row(Text(label if index == 0 else ""), shown)
    return details


def _next_steps(finding: Finding, width: int) -> list[Text]:
    """The next steps, each on lines of its own. A command is never broken across lines -- a
    pasted half runs a broken command -- so it may run past the width; its comment, which
    nobody pastes, wraps under it. Sentences wrap like the rest of the finding."""
    labels = label_width(finding)
    column = max(20, width - 2 - labels)
    lines: list[Text] = []
    for index, step in enumerate(finding.next_steps):
        label = Text(("next" if index == 0 else "").ljust(labels), style="dim")
        text = inert(step)
        if not is_command(step):
            wrapped = Text(text).wrap(Console(width=column, color_system=None), column)
            for number, line in enumerate(wrapped):
                first = label if number == 0 else Text(" " * labels)
                lines.append(Text.assemble("  ", first, line))
            continue
        command, mark, comment = text.partition(COMMENT_MARK)
        whole = command + mark + comment
        if len(whole) <= column or not mark:
            lines.append(Text.assemble("  ", label, Text(whole if mark else command)))
            continue
        lines.append(Text.assemble("  ", label, Text(command)))
        comment_width = max(10, column - 2)
        wrapped = Text("# " + comment).wrap(Console(width=comment_width), comment_width)
        for line in wrapped:
            lines.append(Text.assemble("  ", " " * labels, "  ", Text(line.plain, style="dim")))
    for line in lines:
        line.no_wrap = True
        line.overflow = "ignore"
    return lines


def finding_block(finding: Finding, width: int = 10_000) -> list[RenderableType]:
    """The finding's title, what it says, blame and evidence, then its next steps (each
    printed whole, see :func:`_next_steps`) and what was not checked."""
    before = _details(
        finding,
        (
            ("blame", [_t(finding.blame.value.replace("-", " "))]),
            ("evidence", _evidence_text(finding)),
        ),
    )
    where = where_text(finding)
    after = _details(
        finding,
        (
            ("not checked", [_t(item) for item in finding.unchecked]),
            ("where", [_t(where)] if where else []),
            ("filter", [_t(item) for item in finding.outside_filter]),
        ),
    )
    parts: list[RenderableType] = [
        finding_title(finding),
        Padding(Group(_t(finding.summary), before), (0, 0, 0, 2)),
        *_next_steps(finding, width),
    ]
    if finding.unchecked or where or finding.outside_filter:
        parts.append(Padding(after, (0, 0, 0, 2)))
    return parts


def where_text(finding: Finding) -> str | None:
    """``netns pod:shop/web  container web  pod shop/web``, for a finding placed in one."""
    parts = [
        f"{name} {value}"
        for name, value in (
            ("netns", finding.netns),
            ("container", finding.container),
            ("pod", finding.pod),
        )
        if value
    ]
    return "  ".join(parts) or None


def findings_section(console: Console, report: Report) -> None:
    if report.empty_selection is not None:
        console.print(Text(f"No socket matched {inert(report.empty_selection)}: nothing to judge."))
        return
    if not report.findings:
        console.print(Text("No problems found.", style=SEVERITY_STYLE[Severity.OK]))
        return
    for finding in report.findings:
        for part in finding_block(finding, console.width):
            print_line(console, part)
        console.print()


# --- the verdict, first and last -----------------------------------------------------------------

VERDICT_LINES = 12  # finding lines in the verdict when the screen's height is not known


def verdict_lines(report: Report, room: int | None = None) -> list[Text]:
    """One line per finding, worst first, each cut to the width with a mark rather than
    wrapped (the detail follows); at most ``room`` lines, the last then saying how many more
    there are."""
    room = VERDICT_LINES if room is None else max(2, room)
    findings = report.findings
    shown = findings if len(findings) <= room else findings[: room - 1]
    lines: list[Text] = []
    for finding in shown:
        line = Text("  ")
        line.append_text(finding_title(finding, with_state=False))
        line.no_wrap = True
        line.overflow = "ellipsis"
        lines.append(line)
    if len(shown) < len(findings):
        lines.append(Text(f"  and {plural(len(findings) - len(shown), 'more finding')}", "dim"))
    return lines


def verdict_head(report: Report) -> Text:
    """``Verdict: 1 critical, 2 warnings, 0 info`` above the lines, or that nothing is wrong;
    when the filters matched no socket, that nothing was judged (not that all is well)."""
    if report.empty_selection is not None:
        return _nothing_judged(report.empty_selection)
    if not report.findings:
        return Text("Verdict: no problems found", style=SEVERITY_STYLE[Severity.OK])
    text = Text("Verdict: ", style="bold")
    undecided = report.age_decides
    if undecided and report.worst_severity is Severity.INFO:
        # Nothing crossed a threshold, yet a few sockets no timer ends are of unknown or
        # lasting age: neither "no problems" nor a warning.
        text.append(
            f"nothing over the thresholds; {plural(undecided, 'socket')} whose age decides ("
        )
        text.append(severity_counts(report.count_by_severity(), zeros=False))
        text.append(")")
        return text
    text.append(severity_counts(report.count_by_severity(), zeros=False))
    return text


def _nothing_judged(selection: str) -> Text:
    return Text(f"Verdict: nothing to judge, no socket matched {inert(selection)}")


def closing_line(report: Report) -> Text:
    """The last line of the table view: the counts and the worst finding, so what matters is
    on screen also after the detail has scrolled past."""
    if report.empty_selection is not None:
        return _nothing_judged(report.empty_selection)
    if not report.findings:
        return Text(
            f"Verdict: no problems found in {plural(report.socket_count, 'socket')}",
            style=SEVERITY_STYLE[Severity.OK],
        )
    worst = report.findings[0]
    text = verdict_head(report)
    text.append("; worst: ")
    text.append(worst.severity.label, style=SEVERITY_STYLE[worst.severity])
    text.append(" ")
    text.append(inert(worst.code), style="bold")
    text.append("  " + inert(worst.subject.describe()))
    return text


def print_line(console: Console, part: RenderableType) -> None:
    """Print ``part``; a one-line Text keeps its own no_wrap and overflow (console.print
    would merge it into a Text of its own and drop them), and one that may run past the
    width (a next-step command) is not cropped."""
    if isinstance(part, Text) and part.no_wrap:
        overflow = part.overflow or "ellipsis"
        console.print(part, no_wrap=True, overflow=overflow, crop=overflow != "ignore")
    else:
        console.print(part)


def height_of(console: Console, renderable: RenderableType) -> int:
    """How many lines ``renderable`` takes at the console's width."""
    return len(console.render_lines(renderable, pad=False))


def verdict_section(console: Console, report: Report, height: int | None) -> None:
    """The verdict on one screen: what the header leaves of the screen's height (less room
    for the lines around it), else :data:`VERDICT_LINES`."""
    console.print(verdict_head(report))
    if not report.findings:
        return
    room = None
    if height is not None:
        header_lines = height_of(console, header(report))
        room = height - header_lines - 5
    for line in verdict_lines(report, room):
        print_line(console, line)


# --- tables with a local and a remote address ---------------------------------------------------

Justify = Literal["left", "right"]
# A wrapping column (timer, process name) is counted this wide when deciding whether a layout
# fits: narrower than its content, it wraps; the addresses never do.
WRAP_FLOOR = 8


@dataclass(frozen=True)
class _Column:
    header: str
    justify: Justify = "left"
    wrap: bool = False  # only prose-like columns wrap; numbers and states never do
    label: str | None = None  # how a card names the value (None: the value alone)


@dataclass(frozen=True)
class _Row:
    before: Sequence[Text]
    local: Text
    remote: Text
    after: Sequence[Text]


def _floored(text: Text) -> Text:
    widest = max((cell_len(line) for line in text.plain.split("\n")), default=0)
    return Text("x" * min(widest, WRAP_FLOOR))


def _table(
    before: Sequence[_Column],
    after: Sequence[_Column],
    rows: Sequence[_Row],
    *,
    stacked: bool,
    probe: bool = False,
) -> Table:
    """The table with local and remote side by side, or stacked in one column. A ``probe``
    table has its wrapping columns cut to :data:`WRAP_FLOOR`, so its natural width is the
    least the real table needs without breaking any address."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    for column in before:
        table.add_column(column.header, justify=column.justify, no_wrap=not column.wrap)
    for name in ("LOCAL\n\u2192 REMOTE",) if stacked else ("LOCAL", "REMOTE"):
        table.add_column(name, no_wrap=True)
    for column in after:
        table.add_column(
            column.header, justify=column.justify, no_wrap=not column.wrap, overflow="fold"
        )
    wraps = [column.wrap for column in after]
    for row in rows:
        tail = [_floored(c) if probe and w else c for c, w in zip(row.after, wraps, strict=True)]
        if stacked:
            table.add_row(*row.before, Text.assemble(row.local, "\n\u2192 ", row.remote), *tail)
        else:
            table.add_row(*row.before, row.local, row.remote, *tail)
    return table


def _cards(before: Sequence[_Column], after: Sequence[_Column], rows: Sequence[_Row]) -> Group:
    """For a terminal too narrow for any table: each row as a short block, every address on
    a line of its own (folded only if the terminal is narrower than the address itself)."""
    blocks: list[RenderableType] = []
    for row in rows:
        first = Text()
        for column, value in zip((*before, *after), (*row.before, *row.after), strict=True):
            if first:
                first.append("  ")
            first.append(f"{column.label} " if column.label else "")
            first.append_text(value)
        local = Text.assemble(Text("  local  ", style="dim"), row.local)
        remote = Text.assemble(Text("  remote ", style="dim"), row.remote)
        for line in (local, remote):
            line.overflow = "fold"
        blocks.append(Group(first, local, remote))
    return Group(*blocks)


def address_table(
    console: Console,
    before: Sequence[_Column],
    after: Sequence[_Column],
    rows: Sequence[_Row],
) -> RenderableType:
    """Local and remote side by side where that fits the width without breaking an address;
    else stacked in one column; else one small block per row."""
    for stacked in (False, True):
        probe = _table(before, after, rows, stacked=stacked, probe=True)
        needed = Measurement.get(console, console.options.update(width=1 << 16), probe).maximum
        if needed <= console.width:
            return _table(before, after, rows, stacked=stacked)
    return _cards(before, after, rows)


# --- per-process tables ------------------------------------------------------------------------

_GROUP_BEFORE = (_Column("STATE"), _Column("COUNT", "right", label="count"))
_GROUP_AFTER = (
    _Column("RECV-Q", "right", label="recv-q"),
    _Column("SEND-Q", "right", label="send-q"),
)
# With ages known (a series, or tcp_info): the oldest socket's time in its state, at least.
_GROUP_AFTER_AGED = (*_GROUP_AFTER, _Column("AGE", "right", label="age"))


def _queue(value: int | None, backlog: int | None = None) -> Text:
    if value is None:
        return Text("-")
    return Text(f"{value:,}" + (f"/{backlog:,}" if backlog is not None else ""))


def _unaccepted_text(group: SocketGroup) -> str:
    """Connections counted for the listener's process though it never accepted them."""
    if not group.unaccepted:
        return ""
    if group.unaccepted == group.count:
        return " not accepted"
    return f" ({group.unaccepted:,} not accepted)"


def _group_row(group: SocketGroup, state_styles: dict[TcpState, str], aged: bool) -> _Row:
    age = (Text(age_text(group.oldest_seconds) if group.oldest_seconds is not None else "-"),)
    return _Row(
        before=(
            Text(group.state.value, style=state_styles.get(group.state, "")),
            Text(f"{group.count:,}" + _unaccepted_text(group)),
        ),
        local=Text(endpoint_text(group.local)),
        remote=Text(
            endpoint_text(group.remote)
            if group.remote is not None
            else f"{group.remote_text} ({group.peers:,} peers)"
        ),
        after=(
            _queue(group.recv_queue_max, group.listen_backlog),
            _queue(group.send_queue_max),
            *(age if aged else ()),
        ),
    )


def _process_title(owner: OwnerSummary, owners_hidden: bool = False) -> Text:
    """``pid 812 java  user app  300 sockets  fds 311/65,536  CRITICAL close-wait-leak``, and
    the command line under it. For the sockets without an owner, ``owners_hidden`` says that
    some holders could not be seen, so the title does not claim that nobody holds them."""
    title = Text()
    process = owner.process
    if process is None:
        title.append(
            "no process seen holding these" if owners_hidden else "no process holds these",
            style="bold",
        )
    else:
        title.append(f"pid {process.pid} ", style="bold")
        title.append(inert(process.name or "(name unknown)"), style="bold")
        if process.user:
            title.append(f"  user {inert(process.user)}")
        if process.container is not None:
            container = process.container
            if container.id or container.name:
                title.append(f"  container {inert(container.label)}")
            if container.pod or container.pod_uid:
                title.append(f"  pod {inert(container.pod or container.pod_uid or '')}")
            if process.host_network:
                title.append("  hostNetwork")
        elif process.unit:
            title.append(f"  unit {inert(process.unit)}")
    title.append(f"  {plural(owner.socket_count, 'socket')}")
    if process and process.open_fds is not None:
        limit = "?" if process.fd_soft_limit is None else f"{process.fd_soft_limit:,}"
        title.append(f"  fds {process.open_fds:,}/{limit}")
    worst = owner.worst
    if worst:
        title.append("  ")
        title.append(worst.severity.label, style=SEVERITY_STYLE[worst.severity])
        title.append(" " + inert(worst.code))
    if process and process.cmdline:
        command = inert(" ".join(process.cmdline))
        if len(command) > CMDLINE_SHOWN:
            command = command[: CMDLINE_SHOWN - 3] + "..."
        title.append("\n" + command, style="dim")
    return title


def owner_table(
    console: Console,
    owner: OwnerSummary,
    show_all: bool,
    extra_caption: str | None = None,
    owners_hidden: bool = False,
) -> RenderableType:
    """The title line (over the full width, not squeezed to the table's), the table of
    groups, and a note of rows left out."""
    state_styles: dict[TcpState, str] = {}
    for finding in reversed(owner.findings):  # the worst finding of a state sets its colour
        if finding.state is not None:
            state_styles[finding.state] = SEVERITY_STYLE[finding.severity]
    shown = owner.groups if show_all else owner.groups[:TABLE_GROUP_LIMIT]
    captions: list[str] = []
    hidden = len(owner.groups) - len(shown)
    if hidden:
        captions.append(f"{plural(hidden, 'more row')} not shown (--all shows them)")
    if extra_caption:
        captions.append(extra_caption)
    aged = any(group.oldest_seconds is not None for group in shown)
    table = address_table(
        console,
        _GROUP_BEFORE,
        _GROUP_AFTER_AGED if aged else _GROUP_AFTER,
        [_group_row(group, state_styles, aged) for group in shown],
    )
    parts: list[RenderableType] = [_process_title(owner, owners_hidden), table]
    if captions:
        parts.append(Text("\n".join(captions), style="dim"))
    return Group(*parts)


def _quiet_line(quiet: Sequence[OwnerSummary], others: bool) -> Text:
    sockets = sum(owner.socket_count for owner in quiet)
    names = [
        f"{inert(owner.process.name or '?')} (pid {owner.pid})"
        for owner in quiet[:QUIET_NAMES_SHOWN]
        if owner.process
    ]
    more = len(quiet) - len(names)
    listed = ", ".join(names) + (f" and {more:,} more" if more else "")
    noun, verb = ("process", "holds") if len(quiet) == 1 else ("processes", "hold")
    return Text(
        f"{len(quiet):,} {'other ' if others else ''}{noun} with nothing wrong {verb} "
        f"{plural(sockets, 'socket')}: "
        f"{listed} (--all shows them)",
        style="dim",
    )


def processes_section(console: Console, report: Report, options: RenderOptions) -> None:
    if len(report.namespaces) > 1:
        _per_namespace(console, report, options)
        return
    _owners(console, report, report.processes, report.unowned, options)


def owner_netns(owner: OwnerSummary, first: int) -> int:
    """The network namespace (inode) a process's sockets are in: that of its sockets, else the
    process's own, else ``first`` (the report's first namespace) when neither is known."""
    inode = owner.groups[0].netns if owner.groups else None
    if inode is None and owner.process is not None:
        inode = owner.process.netns
    return inode if inode is not None else first


def namespace_heading(namespace: NetNamespace, sockets: int | None = None) -> Text:
    """``── pod:shop/web  net:[4026532281]  12 sockets``: the line over a namespace's tables."""
    title = Text(f"── {inert(namespace.label)}", style="bold")
    title.append(f"  net:[{namespace.inode}]", style="dim")
    if sockets is not None:
        title.append(f"  {plural(sockets, 'socket')}", style="dim")
    return title


def _per_namespace(console: Console, report: Report, options: RenderOptions) -> None:
    """The tables of each namespace under a line naming it (and how to get in): a report of
    several namespaces, grouped by the container or pod each belongs to."""
    from tcphealth.namespaced import way_in  # only a report of namespaces needs it

    first = report.namespaces[0].inode
    owners: dict[int, list[OwnerSummary]] = {ns.inode: [] for ns in report.namespaces}
    for owner in report.processes:
        owners.get(owner_netns(owner, first), owners[first]).append(owner)
    unowned: dict[int, list[SocketGroup]] = {ns.inode: [] for ns in report.namespaces}
    for group in report.unowned.groups:
        unowned.get(group.netns if group.netns is not None else first, unowned[first]).append(group)
    counts: dict[int, int] = {}
    for sock in report.sockets:
        inode = sock.netns if sock.netns in owners else first
        counts[inode] = counts.get(inode, 0) + 1
    for namespace in report.namespaces:
        groups = unowned[namespace.inode]
        if not owners[namespace.inode] and not groups:
            continue
        states: dict[TcpState, int] = {}
        for group in groups:
            states[group.state] = states.get(group.state, 0) + group.count
        title = namespace_heading(namespace, counts.get(namespace.inode, 0))
        entry = way_in(namespace)
        if entry:
            title.append(f"  {inert(entry)} ...", style="dim")
        console.print(title)
        orphans = OwnerSummary(
            process=None, socket_count=sum(states.values()), states=states, groups=tuple(groups)
        )
        _owners(console, report, owners[namespace.inode], orphans, options)
        console.print()


def _owners(
    console: Console,
    report: Report,
    processes: Sequence[OwnerSummary],
    unowned: OwnerSummary,
    options: RenderOptions,
) -> None:
    quiet: list[OwnerSummary] = []
    for owner in processes:
        if options.show_all or owner.findings:
            console.print(owner_table(console, owner, options.show_all))
            console.print()
        else:
            quiet.append(owner)
    if quiet:
        console.print(_quiet_line(quiet, others=len(quiet) < len(processes)))
        console.print()
    if unowned.socket_count:
        why = None
        attribution = report.attribution
        if not attribution.attempted:
            why = "owners were not looked up (--no-processes, or a source without owners)"
        elif attribution.processes_forbidden:
            why = (
                "some of these are held by processes whose descriptors this user may not "
                "read: run as root to see them"
            )
        elif attribution.sockets_unseen:
            why = (
                "some of these are held by processes not visible here (another PID "
                "namespace, or one that exited during the scan)"
            )
        hidden = attribution.attempted and not attribution.complete
        console.print(owner_table(console, unowned, options.show_all, why, hidden))


# --- one row per socket -------------------------------------------------------------------------

_SOCKET_BEFORE = (_Column("STATE"),)
_SOCKET_AFTER = (
    _Column("RECV-Q", "right", label="recv-q"),
    _Column("SEND-Q", "right", label="send-q"),
    _Column("TIMER", wrap=True, label="timer"),
    _Column("PROCESS", wrap=True, label="process"),
)


def _one_line(text: Text) -> Text:
    """A cell of a socket row that is shortened with a mark (…) rather than wrapped: one
    row per socket, whatever the width."""
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def _timer(sock: Socket) -> Text:
    if sock.timer is None or sock.timer in (TimerKind.NONE, TimerKind.UNKNOWN):
        shown = "-"
    else:
        shown = sock.timer.value
        if sock.timer_seconds is not None:
            shown += f" {sock.timer_seconds:.1f}s"
    if sock.retransmits:
        shown += f" retrans {sock.retransmits}"
    return Text(shown)


def _socket_row(report: Report, sock: Socket) -> _Row:
    pids = ",".join(str(pid) for pid in sock.pids)
    names = report.process_names(sock.pids)
    owner = " ".join(part for part in (pids, inert(names) if names else "") if part) or "-"
    return _Row(
        before=(Text(sock.state.value),),
        local=Text(endpoint_text(sock.local)),
        remote=Text(endpoint_text(sock.remote)),
        after=(
            _queue(sock.recv_queue, sock.listen_backlog),
            _queue(sock.send_queue),
            _one_line(_timer(sock)),
            _one_line(Text(owner)),
        ),
    )


def sockets_section(console: Console, report: Report, options: RenderOptions) -> None:
    limit = options.socket_limit(table=True)
    shown = list(itertools.islice(report.sockets, limit))
    if not shown:
        console.print(Text("No sockets.", style="dim"))
        return
    console.print(
        address_table(
            console,
            _SOCKET_BEFORE,
            _SOCKET_AFTER,
            [_socket_row(report, sock) for sock in shown],
        )
    )
    hidden = len(report.sockets) - len(shown)
    if hidden:
        console.print(
            Text(
                f"{plural(hidden, 'more socket')} not shown: --limit 0 shows all, "
                "--state/--port/--pid narrow them, --format plain streams them",
                style="dim",
            )
        )


# --- the whole output ----------------------------------------------------------------------------


def _print_all(
    console: Console, report: Report, options: RenderOptions, height: int | None
) -> None:
    console.print(header(report))
    console.print()
    if options.view is View.SOCKETS:
        sockets_section(console, report, options)
        return
    if options.view in (View.REPORT, View.BRIEF):
        verdict_section(console, report, height)
        console.print()
    if options.view is View.BRIEF:
        if report.findings:
            console.print(Text("tcphealth without --brief gives the detail", style="dim"))
        return
    if report.findings or options.view is View.CHECK:  # the verdict said there were none
        findings_section(console, report)
    if options.view is View.CHECK:
        return
    processes_section(console, report, options)
    if options.with_sockets:
        console.print()
        sockets_section(console, report, options)
    console.print()
    print_line(console, closing_line(report))


def render(report: Report, options: RenderOptions, env: Environment) -> None:
    console = make_console(env)
    with console.capture() as capture:
        _print_all(console, report, options, env.height)
    # rich pads every table line to the table's width; the blanks carry nothing, and neither
    # do empty lines at the end.
    lines: list[str] = []
    for line in capture.get().splitlines():
        line = line.rstrip()
        if line or (lines and lines[-1]):  # one empty line between sections, never two
            lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    for line in lines:
        env.stdout.write(line + "\n")
