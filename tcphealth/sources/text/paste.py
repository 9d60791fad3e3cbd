"""Read a paste: the text of ``ss``/``netstat`` runs, often several, often among other output.

A paste is read line by line. Shell prompts (``root@node:~# ss -antp``) tell which command
printed what follows, who ran it (root or not) and on which host; a table header or a ``---``
separator starts a new *section*. Each row is recognised by its shape -- so ``ss`` rows piped
through ``grep`` need no header -- and read by its format's module. ``sysctl`` lines,
``Max open files`` limits, ``/proc/PID/fd | wc -l`` counts, ``netstat -s`` counters and
per-state summaries (``TIME_WAIT 65547``) are kept; any other text is passed over quietly. Only
a line that looks like a socket row but cannot be read is reported as skipped.

Sections become *captures* (one look at the host each): a section joins the current capture
unless that capture already holds a section of the same format printed by the same command under
the same header, in which case the same look was taken again and a new capture starts. So
``ss -nltp`` followed by ``ss -antp | grep 30720`` is one capture, so are headerless netstat rows
followed by an ``ss`` row, and a loop printing ``ss -natp`` between ``---`` lines is a series.
The last capture is read with the listings an earlier capture took once, of a kind it does not
hold: the last look of each kind describes the host.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from tcphealth import bounds
from tcphealth.errors import InputError
from tcphealth.model import (
    Attribution,
    Elision,
    ErrorKind,
    ErrorLine,
    HostInfo,
    KernelMessage,
    OwnerSource,
    Process,
    ReportedCount,
    Snapshot,
    Socket,
    Sysctls,
    TcpState,
    TimerKind,
)
from tcphealth.sources.owners import credit_unaccepted_to_listeners
from tcphealth.sources.procfs import parse_port_list, parse_tcp_mem
from tcphealth.sources.text import registry
from tcphealth.sources.text.error_lines import logged_by, match_error_line, names_ports
from tcphealth.sources.text.kernel_log import KernelLine, Suppressed, match_kernel_line
from tcphealth.sources.text.lines import (
    SYSCTL_FIELDS,
    CountPart,
    NotTcp,
    Prompt,
    Row,
    RowError,
    SsSummary,
    TableCommand,
    ascii_int,
    count_parts,
    fd_count_commands,
    histogram_selection,
    listing_limit,
    listing_state,
    lists_every_listener,
    looks_like_count_command,
    match_counter,
    match_fd_limits,
    match_prompt,
    match_sockstat,
    match_ss_summary,
    match_summary,
    match_sysctl,
    parse_table_command,
    state_word,
)
from tcphealth.sources.text.parser import Context, RowParser
from tcphealth.sources.text.powershell import Grouped, match_grouped
from tcphealth.sources.text.stamps import Stamp, read_stamp, split_prompt_stamp

SEPARATORS = frozenset({"---", "----", "-----", "===", "====", "#####"})
# ``lsof -p 26768``, ``lsof -np 26768``, ``lsof -p26768``: the one process lsof is asked about.
_LSOF_PID = re.compile(r"\blsof\b(?:\s+-[A-Za-z]+)*?\s+-[A-Za-oq-z]*p\s*(\d{1,9})\b")


@dataclass
class _Mark:
    """An elision mark as read, with the states and holders of the rows on either side."""

    text: str
    states: list[TcpState] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)

    def beside(self, row: Row) -> None:
        if row.state not in self.states:
            self.states.append(row.state)
        self.pids.update(holder.pid for holder in row.holders or ())

    def elision(self) -> Elision:
        return Elision(mark=self.text, states=tuple(self.states), pids=tuple(sorted(self.pids)))


@dataclass
class Section:
    kind: str | None  # a format name; None for a section of summaries only
    signature: tuple[str | None, str | None]  # (the command, the header) that printed it
    command: TableCommand | None
    header: str | None
    privileged: bool | None
    rows: list[Row] = field(default_factory=list)
    state_counts: Counter[str] = field(default_factory=Counter)
    first_line: int = 0
    # The time the paste printed last before this section (its line), not yet given to a
    # capture: a capture that starts with this section was taken then.
    stamp: tuple[int, Stamp] | None = None
    counted_by: str | None = None  # the format whose tool printed its per-state counts
    # The one state the command that printed it narrowed its rows to (lines.listing_state).
    listed_state: TcpState | None = None
    # Elision marks inside the listing, each with the rows beside it as they are read (the
    # rows themselves are let go before the snapshot is built).
    elided: list[_Mark] = field(default_factory=list)
    # Marks still waiting for the row after them.
    awaiting: list[_Mark] = field(default_factory=list)

    def add_row(self, row: Row) -> None:
        if self.awaiting:
            for mark in self.awaiting:
                mark.beside(row)
            self.awaiting.clear()
        self.rows.append(row)

    def add_cut(self, text: str) -> None:
        """The listing ended where ``head``/``tail`` stopped it: the rows left out are most
        likely of the kinds shown, all of them."""
        mark = _Mark(text)
        for row in self.rows:
            mark.beside(row)
        self.elided.append(mark)

    def add_mark(self, text: str) -> None:
        """A mark after the rows read so far: the row before it is known now, the row after
        it when (if) it comes."""
        mark = _Mark(text)
        mark.beside(self.rows[-1])
        self.elided.append(mark)
        self.awaiting.append(mark)

    @property
    def has_content(self) -> bool:
        return bool(self.rows or self.state_counts)


@dataclass
class Capture:
    sections: list[Section] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    hostname: str | None = None
    stamp: tuple[int, Stamp] | None = None  # when it was taken, as the paste printed it


@dataclass
class Facts:
    """What the paste says about the host as a whole; given to every capture."""

    sysctls: dict[str, int] = field(default_factory=dict)
    port_range: tuple[int, int] | None = None
    # Settings that are not one number (tcp_mem, ip_local_reserved_ports), by Sysctls field.
    other_sysctls: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    fd_limits: dict[int, tuple[int | None, int | None]] = field(default_factory=dict)
    open_fds: dict[int, int] = field(default_factory=dict)
    # The highest descriptor number an lsof listing showed open, per pid (any file type).
    highest_fd: dict[int, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Counts the transcript printed, per command part, every number in order (a loop prints
    # several); the pid a ``pgrep NAME`` stood for where the paste shows it.
    counted: dict[str, tuple[CountPart, list[int]]] = field(default_factory=dict)
    pgrep: dict[str, int] = field(default_factory=dict)
    # Counts a tool summed up itself (ss -s, PowerShell's Group-Object per state and owner),
    # the last of each kind, and the names they give pids.
    summed: list[ReportedCount] = field(default_factory=list)
    # Per-state counts a histogram pipeline printed (``| sort | uniq -c``), as the same
    # command printed them last; see :meth:`reported`.
    histograms: list[ReportedCount] = field(default_factory=list)
    stale_histograms: list[ReportedCount] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)
    # Kernel log lines saying a limit was hit, one record per event (and listener), in the
    # order first seen; "callbacks suppressed" counts summed.
    kernel_log: dict[tuple[object, ...], KernelMessage] = field(default_factory=dict)
    suppressed: int = 0
    # The instant the last line of each printed, where its time says one (ISO with a zone).
    kernel_epochs: dict[tuple[object, ...], float | None] = field(default_factory=dict)
    # A program's error lines (EMFILE, EADDRNOTAVAIL), one record per kind, first seen first.
    error_lines: dict[ErrorKind, ErrorLine] = field(default_factory=dict)
    # Processes a command narrowed its output to (``lsof -p 26768``): the paste is about them
    # even where no row names them.
    named_pids: set[int] = field(default_factory=set)

    def add_error_line(self, number: int, line: str, kind: ErrorKind) -> None:
        old = self.error_lines.get(kind)
        if old is None:
            tag = logged_by(line)
            if tag is not None:
                self.names.setdefault(tag[1], tag[0])  # the process the paste is then about
            self.error_lines[kind] = ErrorLine(
                kind=kind,
                text=line[:300],
                count=1,
                line=number,
                program=tag[0] if tag is not None else None,
                pid=tag[1] if tag is not None else None,
                ports_named=kind is ErrorKind.LOCAL_PORTS and names_ports(line),
            )
        else:
            self.error_lines[kind] = replace(old, count=old.count + 1)

    def stateless_counts(self) -> list[str]:
        """Notes for the counts the paste printed of no one state (``netstat -tn | grep 6379 |
        wc -l``): read and said; they mix every state, so only their growth is judged."""
        notes = []
        for part, values in self.counted.values():
            if part.state is not None or part.writes is not None or not values:
                continue
            shown = ", then ".join(f"{value:,}" for value in values[-4:])
            if part.selects is None and _LSOF_PID.search(part.text):
                what = (
                    "the files lsof lists for one process: its descriptors, and its directory, "
                    "program and mapped files besides"
                )
            else:
                what = "a count of rows in any state" + (
                    f" (selected by {part.selects})" if part.selects else ""
                )
            # A socket listing's count is judged (its growth: the reported rule); lsof's is not.
            judged = "" if _counts_sockets(part) else ", which no rule judges"
            notes.append(
                f"the paste's own `{part.text}` printed {shown}: {what}{judged} -- it does not "
                "say which states they are in"
            )
        return notes

    def add_kernel_line(self, number: int, line: str, found: KernelLine) -> None:
        key = (found.event, found.port, found.address, found.cookies)
        stamp = read_stamp(found.stamp) if found.stamp is not None else None
        self.kernel_epochs[key] = stamp.epoch if stamp is not None else None
        old = self.kernel_log.get(key)
        if old is None:
            self.kernel_log[key] = KernelMessage(
                event=found.event,
                text=line.strip()[:300],
                count=1,
                line=number,
                first_seen=found.stamp,
                port=found.port,
                address=found.address,
                cookies=found.cookies,
            )
        else:
            self.kernel_log[key] = replace(old, count=old.count + 1, last_seen=found.stamp)

    def kernel_messages(self, taken_at: float | None) -> tuple[KernelMessage, ...]:
        """The log's messages as a capture taken at ``taken_at`` (an instant, or None) sees
        them: how long before it the last of each was printed, where both times are known."""
        messages = []
        for key, message in self.kernel_log.items():
            last = self.kernel_epochs.get(key)
            before = taken_at - last if taken_at is not None and last is not None else None
            messages.append(
                replace(message, suppressed=self.suppressed, seconds_before_capture=before)
            )
        return tuple(messages)

    def add_summed(self, count: ReportedCount) -> None:
        """A tool's count; the same count printed again (a loop) replaces it, kept as earlier."""
        _add_count(self.summed, count)

    def start_histogram(self, command: str) -> None:
        """The histogram ``command`` printed again: its last printing's counts go (a state it
        no longer prints has none now) and are kept as earlier for the states it prints."""
        self.stale_histograms = [c for c in self.histograms if c.command == command]
        self.histograms = [c for c in self.histograms if c.command != command]

    def add_histogram(self, count: ReportedCount) -> None:
        """A histogram pipeline's count of one state (see :meth:`start_histogram`)."""
        for old in self.stale_histograms:
            if (old.command, old.state, old.selects) == (count.command, count.state, count.selects):
                count = replace(count, earlier=(*old.earlier, old.count))
        _add_count(self.histograms, count)

    def reported(self, *, listed: bool = True) -> tuple[ReportedCount, ...]:
        """The counts the paste printed itself. A histogram's are among them only where the
        paste lists no sockets (``listed`` False): beside a listing it summarises, a histogram
        is the host's per-state count that the rules over the listing read as such (the
        TIME_WAIT bucket rule does); alone it is all the paste gives, as a ``| wc -l`` is."""
        found: list[ReportedCount] = []
        for part, values in self.counted.values():
            if not values or (part.state is None and not _counts_sockets(part)):
                continue
            count = values[-1]
            pids = part.pids
            selects = part.selects
            if not pids and part.program is not None and part.program in self.pgrep:
                pid = self.pgrep[part.program]
                pids = (pid,)
                selects = f"{selects} (pgrep {part.program} is pid {pid}: strace attached to it)"
            found.append(
                ReportedCount(
                    state=part.state,
                    count=count,
                    sockets=max(count - 1, 0) if part.counts_header else count,
                    command=part.text,
                    selects=selects,
                    pids=pids,
                    peer=part.peer,
                    earlier=tuple(values[:-1]),
                )
            )
        return (*found, *self.summed, *(() if listed else self.histograms))

    def all_sysctls(self) -> dict[str, Any]:
        """Every setting read, by Sysctls field, but the port range."""
        return {**self.sysctls, **self.other_sysctls}


def _counts_sockets(part: CountPart) -> bool:
    """Whether a count of no one state counts the rows of an ss or netstat listing (sockets,
    in any state) -- not lsof's files of a process, nor a saved selection."""
    return part.state is None and part.writes is None and parse_table_command(part.text) is not None


def _add_count(counts: list[ReportedCount], count: ReportedCount) -> None:
    """Add ``count``; the same command's count of the same thing printed again (a loop)
    replaces the older one, which is kept as earlier."""
    for number, old in enumerate(counts):
        if (old.command, old.state, old.selects, old.pids) == (
            count.command,
            count.state,
            count.selects,
            count.pids,
        ):
            counts[number] = replace(count, earlier=(*old.earlier, old.count))
            return
    counts.append(count)


# A line a reporter put in a listing for rows left out: "...", "…", "<snip>", "(snip)",
# "[...]", or a bracketed remark about what was cut ("[very long list]", "[200 more lines]").
_ELISION = re.compile(
    r"^(?:\.{3,}|…+|\. \. \.|[<(\[]\s*(?:\.{3}|…|snip(?:ped)?)\s*[>)\]]"
    r"|\[[^\]]*\b(?:more|list|snip(?:ped)?|truncated|omitted|elided|cut|lines|rows|etc)\b[^\]]*\])$",
    re.IGNORECASE,
)
_ELISION_MAX = 80
# The most words the line under a wrapped row holds: its state, then PID/Program and a timer
# (netstat -o's ``off (0.00/0/0)`` is two words).
_WRAPPED_TAIL_WORDS = 4
# HTML line breaks a tracker's import left at the ends of a pasted line (JIRA: "<p>$ cmd <br/>",
# "tcp ... 795/traffic_stats   <br/>"); a tag elsewhere in the line is kept.
_HTML_EDGES = re.compile(r"^<p>|(?:\s*<br\s*/?>|\s*</p>)+\s*$", re.IGNORECASE)
# A placeholder a reporter typed for an address or port with blanks in it ("<server 1>");
# its blanks would split one column into two, so they are joined before the row is read.
_SPACED_PLACEHOLDER = re.compile(r"<[\w.-]{1,40}(?: [\w.-]{1,40}){1,3}>", re.ASCII)
# lsof's FD column for an open descriptor: its number, its mode (r, w, u) and a lock letter.
_LSOF_FD = re.compile(r"^(\d{1,10})[rwu -]?[A-Za-z]?$", re.ASCII)
_STRACE_ATTACHED = re.compile(r"^strace: Process (\d{1,9}) attached")
_ANNOTATED = re.compile(r"^(?P<cmd>.*\S)\s+->\s+(?P<result>\S.*)$")
_MACOS_PORTRANGE = re.compile(
    r"^sysctl\s+net\.inet\.ip\.portrange\.first\s+net\.inet\.ip\.portrange\.last\s*$"
)


class _Reader:
    def __init__(self, where: str, formats: frozenset[str], strict: bool) -> None:
        self.where = where
        self.formats = formats
        self.strict = strict
        self.kept_rows = 0  # socket rows kept, in every capture: bounds.PASTE_SOCKET_LIMIT
        # Every format's parser in the registry's order (see there why the order), also those
        # not asked for: a row of another format is then known for what it is and passed over.
        self.parsers = [(name, registry.parser(name)) for name in registry.NAMES]
        self.in_context = [
            (name, parser) for name, parser in self.parsers if parser.looks_like_row_in_context
        ]
        self.titles = tuple(title for _, parser in self.parsers for title in parser.titles)
        self.foreign_titles = tuple(
            title for _, parser in self.parsers for title in parser.foreign_titles
        )
        self.unprivileged_warnings = tuple(
            line for _, parser in self.parsers for line in parser.unprivileged_warnings
        )
        self.splitters = [
            parser.split_line for _, parser in self.parsers if parser.split_line is not None
        ]
        self.facts = Facts()
        self.captures: list[Capture] = [Capture()]
        # Separators that closed an empty sample since the last section with rows: a loop
        # (``while ...; do ss ... | grep X; echo ---; done``) whose last looks printed nothing.
        self.empty_looks = 0
        self.section: Section | None = None
        self.command: TableCommand | None = None
        self.listed_state: TcpState | None = None  # what the current command's rows keep
        self.prompt: Prompt | None = None
        # The head/tail stage ending the last prompt's listing and its line limit, and the
        # lines printed under that prompt so far (lines.listing_limit).
        self.cut: tuple[str, int] | None = None
        self.printed = 0
        self.privileged: bool | None = None
        self.hostname: str | None = None
        self.header: str | None = None
        self.header_kind: str | None = None
        self.foreign = False  # inside a UNIX-socket or kernel-control section
        self.pending: Row | None = None
        self.pending_parser: RowParser | None = None
        # A row that could not be read, held for one line: a mail client or a narrow terminal
        # may have wrapped it, putting its last columns on the next line (see join_wrapped).
        self.cut_row: tuple[int, str, str] | None = None
        self.pending_text = ""
        # Each format's view of the header and command, made once per table, not per row:
        # emptied wherever the header, its format or the command changes.
        self.contexts: dict[str, Context] = {}
        self.expected_counts: list[tuple[int, int, str] | None] = []
        self.limits_pid: int | None = None
        # The setting a ``cat /proc/sys/net/ipv4/NAME`` prompt prints on the next line, by its
        # sysctl name (net.ipv4.NAME).
        self.proc_sys: str | None = None
        # What each number printed under the last command counts, in turn (a loop repeats).
        self.count_parts: list[CountPart | None] = []
        self.count_turn = 0
        # The last command when it prints a per-state histogram (``| sort | uniq -c``): its
        # text and what it selected, for the counts printed under it.
        self.histogram: tuple[str, str] | None = None
        self.files: dict[str, CountPart] = {}
        self.pgrep_program: str | None = None
        # The last time printed (date, a prompt's timestamp) that no capture has taken yet:
        # each time is when the next capture after it was taken, and no later one's.
        self.stamp: tuple[int, Stamp] | None = None

    # --- sections and captures -------------------------------------------------------------

    def close_section(self) -> None:
        self.flush_pending()
        section = self.section
        self.section = None
        if section is None or not section.has_content:
            return
        self.empty_looks = 0
        capture = self.captures[-1]
        # The same look again: the same command and header printing the same format. Rows of
        # another format under no command or header (netstat rows, then an ss row, in one
        # block) are another tool's look at the host, read with it.
        if any(
            old.signature == section.signature and not _other_formats(old, section)
            for old in capture.sections
        ) or (
            # a format whose tables are a view of their own (lsof's descriptors of chosen
            # processes) never joins another tool's look at the host in one capture
            None not in (view := _own_view(section.kind), held := _own_view_of(capture))
            and view != held
        ):
            capture = Capture()
            self.captures.append(capture)
        capture.stamp = capture.stamp or section.stamp
        if section.stamp is not None and section.stamp is self.stamp:
            self.stamp = None  # this look's time; a later capture needs a time of its own
        capture.sections.append(section)
        capture.hostname = capture.hostname or self.hostname

    def open_section(self, kind: str | None, number: int) -> Section:
        command_text = self.command.text if self.command is not None else None
        self.section = Section(
            kind=kind,
            signature=(command_text, " ".join(self.header.split()) if self.header else None),
            command=self.command,
            header=self.header,
            privileged=self.privileged,
            first_line=number,
            stamp=self.stamp,
            listed_state=self.listed_state if self.command is not None else None,
        )
        return self.section

    def flush_pending(self) -> None:
        row = self.pending
        if row is not None and self.section is not None:
            # Checked once the row is whole (ss -i details come on the lines under it).
            reason = _row_problem(row)
            if reason is None:
                self.kept_rows += 1
                if self.kept_rows > bounds.PASTE_SOCKET_LIMIT:
                    raise InputError(
                        self.where,
                        f"more than {bounds.PASTE_SOCKET_LIMIT:,} socket rows: a paste is read "
                        "up to that many, to keep memory within its bound (the README's size "
                        "limits); save a snapshot on the host instead (tcphealth snapshot -o)",
                        line=row.line,
                    )
                self.section.add_row(row)
            else:
                self.skip(row.line, reason, self.pending_text)
        self.pending = None
        self.pending_parser = None

    # --- one line ----------------------------------------------------------------------------

    def feed(self, number: int, line: str) -> None:
        stripped = line.strip()
        if not stripped:
            return
        posted = _undo_posting(line, stripped)
        if posted is not None:
            self.feed(number, posted)
            return
        if self.cut_row is not None and self.join_wrapped(stripped):
            return
        for split in self.splitters:
            rows = split(stripped)
            if rows is not None:
                for row in rows:
                    self.feed(number, row)
                return
        pending_parser = self.pending_parser
        if (
            self.pending is not None
            and pending_parser is not None
            and pending_parser.is_continuation is not None
            and pending_parser.read_continuation is not None
            and pending_parser.is_continuation(line)
        ):
            self.pending = pending_parser.read_continuation(line, self.pending)
            self.printed += 1
            return
        # Before the times: a dmesg line starts with one ("[Mon Nov 16 14:55:04 2020] TCP: ...").
        logged = match_kernel_line(stripped)
        if logged is not None:
            if isinstance(logged, Suppressed):
                self.facts.suppressed += logged.count
            else:
                self.facts.add_kernel_line(number, stripped, logged)
            return
        stamp = read_stamp(stripped)
        if stamp is not None:
            self.stamp = (number, stamp)  # date's output, or a time alone on its line
            return
        prompt = match_prompt(line)
        if prompt is None and line[:1] in " \t":
            # A markdown indented code block keeps its prompt behind the indent.
            prompt = match_prompt(stripped)
        stamped = split_prompt_stamp(line) if prompt is None or line[:1] in "[(0123456789" else None
        if stamped is not None:
            after = match_prompt(stamped[1])
            if after is not None:  # a prompt that starts with the time it was shown
                self.stamp = (number, stamped[0])
                prompt = after
        if prompt is not None:
            self.on_prompt(prompt)
            return
        self.printed += 1  # one more line of the last prompt's output
        if self.read_bare_command(stripped):
            return
        if stripped in SEPARATORS:
            if self.section is None or not self.section.has_content:
                self.empty_looks += 1  # nothing printed since the last separator
            self.close_section()
            return
        if stripped.startswith(self.foreign_titles):
            self.close_section()
            self.foreign = True
            self.header = None
            self.contexts.clear()
            return
        if stripped.startswith(self.titles):
            self.close_section()
            self.foreign = False
            self.header = None
            self.contexts.clear()
            return
        kind = self.header_kind_of(line)
        if kind is not None:
            self.close_section()
            self.foreign = False
            self.header = line
            self.header_kind = kind
            self.contexts.clear()
            return
        if self.foreign:
            return
        if stripped.startswith(self.unprivileged_warnings):
            self.privileged = False
            if self.section is not None:
                self.section.privileged = False
            return
        if self.read_fact(number, line):
            return
        grouped = match_grouped(line)
        if grouped is not None:
            self.read_grouped(number, grouped)
            return
        # Marks are short; the length check keeps a hostile long line from the pattern's
        # backtracking (quadratic in the line's length).
        if len(stripped) <= _ELISION_MAX and _ELISION.match(stripped) and self.section is not None:
            self.flush_pending()
            if self.section.rows:
                self.section.add_mark(stripped)
            return
        summary = match_summary(line)
        if summary is not None:
            self.flush_pending()
            state, count = summary
            section = self.section
            if section is None or section.rows:
                self.close_section()
                section = self.open_section(None, number)
            section.state_counts[state.value] += count
            if self.histogram is not None:
                command, selects = self.histogram
                self.facts.add_histogram(
                    ReportedCount(
                        state=state,
                        count=count,
                        sockets=count,
                        command=command,
                        selects=selects or None,
                    )
                )
            return
        error = match_error_line(stripped)
        if error is not None:
            self.facts.add_error_line(number, stripped, error)
            return
        self.read_row(number, line)

    def read_grouped(self, number: int, grouped: Grouped) -> None:
        """A ``Get-NetTCPConnection | Group-Object`` count: a per-state count of the look, and
        where the group is one owner's, a count about that process."""
        self.flush_pending()
        section = self.section
        if section is None or section.rows:
            self.close_section()
            section = self.open_section(None, number)
        section.counted_by = "powershell"
        section.state_counts[grouped.state.value] += grouped.count
        if grouped.pid is None:
            return
        name = grouped.name.removesuffix("...") if grouped.name else None
        if grouped.pid != 0 and name:
            self.facts.names.setdefault(grouped.pid, name)
        held = f"OwningProcess {grouped.pid}" + (f" ({grouped.name})" if grouped.name else "")
        self.facts.add_summed(
            ReportedCount(
                state=grouped.state,
                count=grouped.count,
                sockets=grouped.count,
                command="Get-NetTCPConnection | Group-Object State, OwningProcess",
                selects=f"{grouped.raw_state}, {held}",
                pids=(grouped.pid,) if grouped.pid != 0 else (),  # 0: the idle process, nobody
            )
        )

    def header_kind_of(self, line: str) -> str | None:
        for name, parser in self.parsers:
            if parser.is_header(line):
                return name
        return None

    def mark_cut(self) -> None:
        """The listing under the last prompt printed exactly the lines its ``head`` or
        ``tail`` lets through: it was cut there (a shorter one may be whole)."""
        cut, self.cut = self.cut, None
        if cut is None or self.printed != cut[1] or self.section is None:
            return
        self.flush_pending()
        if self.section.rows:
            self.section.add_cut(f"| {cut[0]}")

    def on_prompt(self, prompt: Prompt) -> None:
        self.mark_cut()
        self.close_section()
        self.prompt = prompt
        self.foreign = False
        self.header = None
        self.header_kind = None
        self.contexts.clear()
        if prompt.host:
            self.hostname = prompt.host
        privileged = prompt.privileged
        table_command = parse_table_command(prompt.command)
        if table_command is not None:
            self.command = table_command
            self.listed_state = listing_state(prompt.command)
            self.privileged = privileged
        self.cut = listing_limit(prompt.command)
        self.printed = 0
        self.expected_counts = fd_count_commands(prompt.command)
        self.limits_pid = _limits_pid(prompt)
        self.proc_sys = _proc_sys_name(prompt)
        self.on_command(prompt.command)

    def on_command(self, command: str) -> None:
        """Learn what the numbers a command prints count (``| wc -l``, ``grep -c``)."""
        if any(expected is not None for expected in self.expected_counts):
            self.count_parts = []  # descriptor counts (/proc/PID/fd | wc -l), read above
        else:
            self.expected_counts = []
            self.count_parts = count_parts(command, self.files)
        self.count_turn = 0
        selection = histogram_selection(command)
        self.histogram = (command.strip(), selection) if selection is not None else None
        if self.histogram is not None:
            self.facts.start_histogram(self.histogram[0])
        pgrep = re.search(r"pgrep\s+(?:-\w+\s+)?([\w.-]+)", command)
        self.pgrep_program = pgrep.group(1) if pgrep is not None else None
        self.facts.named_pids.update(int(pid) for pid in _LSOF_PID.findall(command))

    def read_bare_command(self, stripped: str) -> bool:
        """A command line pasted without its prompt: a count pipeline, possibly with its
        result after an arrow (``... | grep -c TIME_WAIT  ->  16128``), or the macOS sysctl
        of the port range with its result so written."""
        annotated = _ANNOTATED.match(stripped)
        command = annotated.group("cmd") if annotated is not None else stripped
        if annotated is not None and _MACOS_PORTRANGE.match(command):
            numbers = re.findall(r"\d{1,5}", annotated.group("result"))
            if len(numbers) == 2:
                self.facts.port_range = (int(numbers[0]), int(numbers[1]))
                return True
        if not looks_like_count_command(command) and histogram_selection(command) is None:
            return False
        self.close_section()
        self.command = None
        self.listed_state = None
        self.header = None
        self.header_kind = None
        self.contexts.clear()
        self.expected_counts = []
        self.on_command(command)
        if annotated is not None:
            self.take_count(annotated.group("result").strip())
        return True

    def take_count(self, printed: str) -> bool:
        """A number printed under a count command: the next count part's result."""
        value = ascii_int(printed)
        if value is None or not self.count_parts:
            return False
        parts = self.count_parts
        for _ in range(len(parts)):
            part = parts[self.count_turn % len(parts)]
            self.count_turn += 1
            if part is not None:
                entry = self.facts.counted.setdefault(part.text, (part, []))
                entry[1].append(value)
                return True
        return False

    def read_fact(self, number: int, line: str) -> bool:
        if self.proc_sys is not None:
            name, self.proc_sys = self.proc_sys, None
            self.store_sysctl(name, line.strip())
            return True
        sysctl = match_sysctl(line)
        if sysctl is not None:
            self.store_sysctl(*sysctl)
            return True
        limits = match_fd_limits(line)
        if limits is not None:
            if self.limits_pid is not None:
                self.facts.fd_limits[self.limits_pid] = limits
            return True
        counter = match_counter(line)
        if counter is not None:
            self.facts.counters[counter[0]] = counter[1]
            return True
        sockstat = match_sockstat(line)
        if sockstat is not None:
            self.facts.counters.update(sockstat)
            return True
        summary = match_ss_summary(line)
        if summary is not None:
            self.read_ss_summary(summary)
            return True
        stripped = line.strip()
        if self.pgrep_program is not None:
            attached = _STRACE_ATTACHED.match(stripped)
            if attached is not None:
                self.facts.pgrep[self.pgrep_program] = int(attached.group(1))
                return True
        if self.take_count(stripped):
            return True
        printed = ascii_int(stripped)
        if printed is not None and self.expected_counts:
            expected = self.expected_counts.pop(0)
            if expected is not None:
                pid, extra, part = expected
                count = max(printed - extra, 0)
                self.facts.open_fds[pid] = count
                if extra:
                    self.facts.notes.append(
                        f"pid {pid}: {count} open file descriptors from `{part}` "
                        f"({stripped} lines, less {extra} that are not descriptors)"
                    )
            return True
        return False

    def read_ss_summary(self, summary: SsSummary) -> None:
        """``ss -s``'s TCP line: host-wide counts per state become the paste's own counts (as
        ``| wc -l`` does), its orphans and TIME_WAIT the sockstat counters it reads them from."""
        self.flush_pending()
        for state, count in summary.states.items():
            self.facts.add_summed(
                ReportedCount(state=state, count=count, sockets=count, command="ss -s")
            )
        if summary.orphaned is not None:
            self.facts.counters["sockstat.TCP.orphan"] = summary.orphaned
        if TcpState.TIME_WAIT in summary.states:
            self.facts.counters["sockstat.TCP.tw"] = summary.states[TcpState.TIME_WAIT]

    def store_sysctl(self, name: str, value: str) -> None:
        words = value.split()
        if name == "net.ipv4.ip_local_port_range":
            low, high = (ascii_int(word, 5) for word in [*words, "", ""][:2])
            if len(words) == 2 and low is not None and high is not None:
                self.facts.port_range = (low, high)
            return
        if name == "net.ipv4.tcp_mem":
            self.facts.other_sysctls["tcp_mem"] = parse_tcp_mem(value)
            return
        if name == "net.ipv4.ip_local_reserved_ports":
            self.facts.other_sysctls["ip_local_reserved_ports"] = parse_port_list(value)
            return
        if name in ("net.netfilter.nf_conntrack_count", "net.nf_conntrack_count"):
            count = ascii_int(words[0]) if len(words) == 1 else None
            if count is not None:
                self.facts.counters["conntrack.count"] = count
            return
        field_name = SYSCTL_FIELDS.get(name)
        number = ascii_int(words[0]) if len(words) == 1 else None
        if field_name is not None and number is not None:
            self.facts.sysctls[field_name] = number

    def context(self, name: str) -> Context:
        context = self.contexts.get(name)
        if context is None:
            own_table = self.header_kind == name
            context = Context(
                header=self.header if own_table else None,
                own_table=own_table,
                command=self.command,
            )
            self.contexts[name] = context
        return context

    def classify(self, tokens: list[str]) -> tuple[str, RowParser] | None:
        """The format whose row this is: by shape first, then by context (see registry)."""
        for name, parser in self.parsers:
            if parser.looks_like_row(tokens):
                return name, parser
        for name, parser in self.in_context:
            assert parser.looks_like_row_in_context is not None
            if parser.looks_like_row_in_context(tokens, self.context(name)):
                return name, parser
        return None

    def note_descriptor(self, tokens: list[str]) -> None:
        """Under an lsof header, every row (sockets, files, pipes) shows a descriptor number
        its process holds: keep the highest per pid."""
        if len(tokens) < 5 or not tokens[1].isdigit() or len(tokens[1]) > 9:
            return
        if self.header is None or self.header.split()[:5] != [
            "COMMAND",
            "PID",
            "USER",
            "FD",
            "TYPE",
        ]:
            return  # a TID column (lsof -K) shifts FD on some rows only: no reading then
        fd = _LSOF_FD.match(tokens[3])
        if fd is not None:
            pid = int(tokens[1])
            self.facts.highest_fd[pid] = max(self.facts.highest_fd.get(pid, 0), int(fd.group(1)))

    def join_wrapped(self, stripped: str) -> bool:
        """The held row with this line after it, where this line holds only a row's last
        columns -- a state word, then at most a few words (PID/Program, a timer): the row was
        wrapped (``tcp 0 0 127.0.0.1:9000 127.0.0.1:45603`` / ``TIME_WAIT -``). Otherwise the
        held row is skipped with its own reason, and the line is read as it is."""
        assert self.cut_row is not None
        number, line, reason = self.cut_row
        self.cut_row = None
        words = stripped.split()
        if len(words) <= _WRAPPED_TAIL_WORDS and state_word(words[0]) is not None:
            self.read_row(number, f"{line}  {stripped}", joinable=False)
            return True
        self.skip(number, reason, line)
        return False

    def finish(self) -> None:
        """The end of the paste: a row still held is skipped."""
        if self.cut_row is not None:
            number, line, reason = self.cut_row
            self.cut_row = None
            self.skip(number, reason, line)
        self.mark_cut()
        self.close_section()

    def read_row(self, number: int, line: str, *, joinable: bool = True) -> None:
        if self.header_kind == "lsof":
            self.note_descriptor(line.split())
        found = self.classify(line.split())
        if found is None or found[0] not in self.formats:
            return  # prose, a command's other output, or a format not asked for
        kind, parser = found
        self.flush_pending()
        try:
            row = parser.read_row(line, self.context(kind))
        except NotTcp:
            return
        except (RowError, ValueError) as error:  # ValueError: a number beyond reason
            if joinable:
                self.flush_pending()
                self.cut_row = (number, line, str(error))  # the next line may complete it
            else:
                self.skip(number, str(error), line)
            return
        row.line = number
        self.pending_text = line
        section = self.section
        if section is None or section.kind != kind:
            if section is not None and section.kind is None and section.rows == []:
                # summaries just before a listing from the same command belong with it
                section.kind = kind
            else:
                self.close_section()
                section = self.open_section(kind, number)
        if section.privileged is None:
            section.privileged = self.privileged
        self.pending = row
        self.pending_parser = parser

    def skip(self, number: int, reason: str, line: str) -> None:
        if self.strict:
            raise InputError(
                self.where, f"line skipped: {reason}: {line.strip()[:200]!r}", line=number
            )
        self.captures[-1].skipped.append((number, reason))


def _other_formats(one: Section, other: Section) -> bool:
    """Whether two sections are rows of two different formats (a section of counts alone has
    none)."""
    return None not in (one.kind, other.kind) and one.kind != other.kind


def _undo_posting(line: str, stripped: str) -> str | None:
    """The line as the tool printed it, where posting it in a thread changed it (``None``
    where nothing did): a markdown quote (``> tcp 0 0 ...``) around a line that is not a
    ``>`` prompt, markdown bold left inside a row (``**ESTABLISHED **11947/swarm``), blanks
    inside a typed placeholder (``<server 1>:49682``), the HTML a tracker's import wrapped
    around each line (``<p>`` before the first, ``<br/>`` after each). Only lines holding ``>``
    or ``**`` are looked at further, so a long paste pays one scan of each line."""
    if ">" not in line and "**" not in line:
        return None
    text = line
    if "<" in text:
        text = _HTML_EDGES.sub("", text)
        stripped = text.strip()
    if (stripped == ">" or stripped.startswith("> ")) and match_prompt(stripped) is None:
        text = stripped[1:].lstrip()
    if "**" in text:
        text = text.replace("**", "")
    if "<" in text:
        text = _SPACED_PLACEHOLDER.sub(lambda found: found.group().replace(" ", "_"), text)
    return None if text == line else text


def _row_problem(row: Row) -> str | None:
    """Why a row read from text holds a value no kernel gives (see :mod:`tcphealth.bounds`)."""
    problem = bounds.fields_problem(row)
    if problem is not None:
        return bounds.described(problem)
    for holder in row.holders or ():
        why = bounds.pid_problem(holder.pid)
        if why is not None:
            return f"holder: {why}"
    return None


def _why_nothing(captures: list[Capture]) -> str:
    """Why a paste gave no socket: the rows that looked like sockets and the first reasons
    they could not be read, or that no line looked like one."""
    skipped = sorted(item for capture in captures for item in capture.skipped)
    if not skipped:
        return "no line looked like a socket row, a per-state count or a count command"
    shown = "; ".join(f"line {number}: {reason}" for number, reason in skipped[:3])
    more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
    return f"{len(skipped)} line(s) looked like socket rows but could not be read -- {shown}{more}"


def _proc_sys_name(prompt: Prompt) -> str | None:
    """The sysctl whose value ``cat /proc/sys/net/ipv4/ip_local_port_range`` prints (its name
    with dots), where the command is that ``cat`` of one file alone."""
    words = prompt.command.split()
    if len(words) != 2 or words[0] != "cat" or not words[1].startswith("/proc/sys/"):
        return None
    name = words[1].removeprefix("/proc/sys/").strip("/")
    return name.replace("/", ".") if name and "." not in name else None


def _limits_pid(prompt: Prompt) -> int | None:
    """The pid whose /proc/PID/limits the command prints: ``cat /proc/22347/limits``, or
    ``cat limits`` in ``/proc/22347``."""
    words = prompt.command.split()
    if len(words) != 2 or words[0] != "cat":
        return None
    target = words[1]
    if not target.startswith("/") and prompt.cwd:
        target = f"{prompt.cwd.rstrip('/')}/{target}"
    parts = target.strip("/").split("/")
    if len(parts) == 3 and parts[0] == "proc" and parts[1].isdigit() and parts[2] == "limits":
        return int(parts[1])
    return None


# --- from captures to snapshots -------------------------------------------------------------


def read_paste(
    lines: Iterable[str],
    where: str,
    *,
    formats: frozenset[str] = frozenset(registry.NAMES),
    strict: bool = False,
    taken_at: float = 0.0,
) -> list[Snapshot]:
    """Every capture in the paste, oldest first. Raises InputError when there is none."""
    reader = _Reader(where, formats, strict)
    for number, raw in enumerate(lines, start=1):
        reader.feed(number, raw.rstrip("\r\n"))
    reader.finish()
    captures = [capture for capture in reader.captures if capture.sections]
    listed = any(section.rows for capture in captures for section in capture.sections)
    reported = reader.facts.reported(listed=listed)
    stateless = reader.facts.stateless_counts()
    if not captures and (
        reported
        or reader.facts.counters
        or reader.facts.kernel_log
        or reader.facts.error_lines
        or stateless
    ):
        # Summaries are inputs too: counts the transcript printed, netstat -s counters, the
        # kernel's log, a program's error lines.
        captures = [reader.captures[-1]]
    if not captures:
        wanted = " or ".join(sorted(formats))
        raise InputError(
            where,
            f"no TCP socket table found (looked for {wanted} output): "
            + _why_nothing(reader.captures),
        )
    # Skipped lines read before the first capture, or after the last, belong to a neighbour.
    orphans = [
        item for capture in reader.captures if not capture.sections for item in capture.skipped
    ]
    if orphans:
        captures[-1].skipped.extend(orphans)
        captures[-1].skipped.sort()
    captures, others = _same_kind(captures)
    emptied = _empty_last_look(captures, reader.empty_looks)
    carried = 0 if emptied else _carry_other_looks(captures)
    snapshots = [_snapshot(capture, reader.facts, where, taken_at) for capture in captures]
    if emptied:
        samples = "sample" if reader.empty_looks == 1 else f"{reader.empty_looks} samples"
        snapshots[-1] = replace(
            snapshots[-1],
            notes=(
                *snapshots[-1].notes,
                f"{where}: the repeated listing's last {samples} printed no rows: what it "
                "selects was gone when the paste ended, so the host as last seen holds none of "
                "them (the samples before are not diagnosed)",
            ),
        )
    if carried:
        snapshots[-1] = replace(
            snapshots[-1],
            notes=(
                *snapshots[-1].notes,
                f"{where}: {plural_looks(carried)} taken once, before the last capture, by "
                "another command, header or tool were read with it: the last look of each kind "
                "describes the host together (a socket both list is counted once, as the later "
                "row shows it)",
            ),
        )
    if others:
        last = snapshots[-1]
        snapshots[-1] = replace(
            last,
            notes=(
                *last.notes,
                f"{where}: {len(others)} capture(s) by another tool "
                f"({', '.join(sorted(set(others)))}) were read but not diagnosed: they show the "
                "descriptors of chosen processes, not the host's sockets",
            ),
        )
    if stateless:
        last = snapshots[-1]
        snapshots[-1] = replace(last, notes=(*last.notes, *(f"{where}: {n}" for n in stateless)))
    earlier = _earlier_summaries(captures)
    if earlier:
        snapshots[-1] = replace(snapshots[-1], earlier_state_counts=earlier)
    if reported:
        # The counts a transcript printed describe the host as last seen: the last capture.
        last = snapshots[-1]
        state_counts = dict(last.state_counts)
        for item in reported:
            if item.count > 0 and item.state is not None:
                state_counts[item.state.value] = max(
                    state_counts.get(item.state.value, 0), item.count
                )
        snapshots[-1] = replace(
            last, reported=reported, state_counts=dict(sorted(state_counts.items()))
        )
    return snapshots


def plural_looks(count: int) -> str:
    return "1 listing" if count == 1 else f"{count} listings"


def _carry_other_looks(captures: list[Capture]) -> int:
    """Read with the last capture the listings an earlier capture took once, of a kind the
    last does not hold (another format, command or header): ``ss -ant | grep 8080``, then
    ``ss -lnt`` twice -- the last look of each kind describes the host together. A kind that
    was taken again in several captures (a loop's samples) is not carried: where the last
    capture lacks it, it printed nothing there. Rows are copied: each capture's snapshot uses
    its own up. Returns how many listings were carried."""
    if len(captures) < 2:
        return 0
    looks: Counter[tuple[str | None, tuple[str | None, str | None]]] = Counter()
    for capture in captures:
        looks.update({(section.kind, section.signature) for section in capture.sections})
    last = captures[-1]
    held = {(section.kind, section.signature) for section in last.sections}
    carried = [
        replace(section, rows=list(section.rows), elided=list(section.elided), awaiting=[])
        for capture in captures[:-1]
        for section in capture.sections
        if section.rows
        and (section.kind, section.signature) not in held
        and looks[(section.kind, section.signature)] == 1
    ]
    last.sections[:0] = carried
    return len(carried)


def _empty_last_look(captures: list[Capture], empty_looks: int) -> bool:
    """Where a repeated listing's last samples printed nothing (two separators with no row
    between them after its last rows), append that last look: the same sections with no rows.
    A repeated listing is one whose last capture's command and header printed the capture
    before it too; a lone listing followed by stray separators is left as it is."""
    if empty_looks < 1 or len(captures) < 2:
        return False
    last, before = captures[-1], captures[-2]
    signatures = {section.signature for section in last.sections}
    if not signatures & {section.signature for section in before.sections}:
        return False
    if any(not section.rows for section in last.sections):
        return False  # a section of summaries alone: not a listing's sample
    empty = [
        replace(section, rows=[], state_counts=Counter(), elided=[], awaiting=[], stamp=None)
        for section in last.sections
    ]
    captures.append(Capture(sections=empty, hostname=last.hostname))
    return True


def _earlier_summaries(captures: list[Capture]) -> dict[str, tuple[int, ...]]:
    """The per-state counts that the last capture's summary commands printed in earlier
    captures, oldest first, for the states the last one counts."""
    last = captures[-1]
    signatures = {section.signature for section in last.sections if section.state_counts}
    states = {state for section in last.sections for state in section.state_counts}
    history: dict[str, list[int]] = {}
    for capture in captures[:-1]:
        for section in capture.sections:
            if section.signature not in signatures:
                continue
            for state, count in section.state_counts.items():
                if state in states:
                    history.setdefault(state, []).append(count)
    return {state: tuple(values) for state, values in sorted(history.items())}


def _own_view(kind: str | None) -> bool | None:
    if kind is None or kind not in registry.BY_NAME:
        return None
    return registry.BY_NAME[kind].own_view


def _own_view_of(capture: Capture) -> bool | None:
    views = {_own_view(section.kind) for section in capture.sections} - {None}
    return views.pop() if len(views) == 1 else None


def _same_kind(captures: list[Capture]) -> tuple[list[Capture], list[str]]:
    """The captures to diagnose: where the paste looks at the host's sockets (netstat, ss,
    their summaries), a view of its own (``lsof -p PID``) is left out, so that a side look
    at one process does not stand for the host as last seen. Also the formats left out, one
    per capture."""
    views = [_own_view_of(capture) for capture in captures]
    if True not in views or all(views):
        return captures, []
    kept = [capture for capture, view in zip(captures, views, strict=True) if not view]
    left = [
        "+".join(sorted({s.kind for s in capture.sections if s.kind is not None}))
        for capture, view in zip(captures, views, strict=True)
        if view
    ]
    return kept, left


def _snapshot(capture: Capture, facts: Facts, where: str, taken_at: float) -> Snapshot:
    kinds = sorted({s.kind or _summary_kind(s) for s in capture.sections}) or ["transcript"]
    notes: list[str] = []
    per_section: list[list[Socket]] = []
    names: dict[int, str | None] = {}
    users: dict[int, str] = {}
    unseen = 0
    attempted = False
    privileged_values = {s.privileged for s in capture.sections}
    row_platforms: set[str | None] = set()
    for section in capture.sections:
        for row in section.rows:
            row_platforms.add(row.platform)
            for holder in row.holders or ():
                if names.get(holder.pid) is None:
                    names[holder.pid] = holder.name
                if row.user_name is not None and len(row.holders or ()) == 1:
                    users[holder.pid] = row.user_name
        # This uses up the section's rows (each is let go once its socket is made).
        section_sockets, section_attempted, section_unseen = _section_sockets(section, notes)
        attempted = attempted or section_attempted
        unseen += section_unseen
        per_section.append(section_sockets)
    # One state for every listing of the capture: a state missing from its rows was not shown.
    narrowed = {
        section.listed_state
        for section, listed in zip(capture.sections, per_section, strict=True)
        if listed
    }
    listed_state = narrowed.pop() if len(narrowed) == 1 else None
    sockets, duplicates = _deduplicate(per_section)
    if duplicates:
        notes.append(
            f"{where}: {duplicates} row(s) showed a socket already listed in the same capture "
            "(overlapping commands); counted once"
        )
    sockets = credit_unaccepted_to_listeners(sockets)
    truncated = sum(1 for sock in sockets if sock.truncated)
    if truncated:
        notes.append(
            f"{where}: {truncated} row(s) have an address cut short by the tool (macOS netstat "
            "keeps 18 characters with -A, 22 without; Linux netstat 23 without -W); their ports "
            "and addresses are "
            "what was printed, possibly a prefix of the real one, and are marked truncated"
        )
    state_counts: Counter[str] = Counter()
    for section in capture.sections:
        for state, count in section.state_counts.items():
            # Several summaries in one capture: the largest is the best lower bound.
            state_counts[state] = max(state_counts[state], count)
    for pid, name in facts.names.items():
        if names.get(pid) is None:
            names[pid] = name
    elisions = tuple(mark.elision() for section in capture.sections for mark in section.elided)
    pids = sorted(
        set(names)
        | set(facts.fd_limits)
        | set(facts.open_fds)
        | set(facts.highest_fd)
        | facts.named_pids
    )
    processes = tuple(
        bounds.capped_process(
            Process(
                pid=pid,
                name=names.get(pid),
                user=users.get(pid),
                open_fds=facts.open_fds.get(pid),
                highest_fd=facts.highest_fd.get(pid),
                fd_soft_limit=facts.fd_limits.get(pid, (None, None))[0],
                fd_hard_limit=facts.fd_limits.get(pid, (None, None))[1],
            )
        )
        for pid in pids
    )
    for number, reason in capture.skipped:
        notes.append(f"{where}:{number}: line skipped: {reason}")
    notes.extend(facts.notes)
    platforms = {registry.BY_NAME[k].platform if k in registry.BY_NAME else None for k in kinds}
    platform = next(iter(platforms)) if len(platforms) == 1 else None
    if platforms == {None} and len(row_platforms) == 1:
        # Formats of any platform (lsof) whose every row told the same one.
        platform = next(iter(row_platforms))
    privileged = privileged_values.pop() if len(privileged_values) == 1 else None
    epoch = capture.stamp[1].epoch if capture.stamp is not None else None
    if capture.stamp is not None and epoch is None:
        number, stamp = capture.stamp
        notes.append(f"{where}:{number}: capture time unknown: {stamp.text!r}: {stamp.why_not}")
    host = HostInfo(
        hostname=capture.hostname,
        kernel=None,
        # The time the paste printed before the capture; without one, the file's time (or
        # when it was read), which is not when the command ran, so the time is not known.
        taken_at=epoch if epoch is not None else taken_at,
        source=f"{'+'.join(kinds)}:{where}",
        privileged=privileged,
        platform=platform,
        taken_at_known=epoch is not None,
    )
    return Snapshot(
        host=host,
        attribution=Attribution(attempted=attempted, sockets_unseen=unseen),
        sysctls=Sysctls(ip_local_port_range=facts.port_range, **facts.all_sysctls()),
        counters=dict(sorted(facts.counters.items())),
        processes=processes,
        sockets=tuple(sockets),
        notes=tuple(notes),
        skipped_lines=len(capture.skipped),
        state_counts=dict(sorted(state_counts.items())),
        elisions=elisions,
        kernel_log=facts.kernel_messages(epoch),
        listed_state=listed_state,
        every_listener_shown=not elisions
        and any(
            section.command is not None and lists_every_listener(section.command.text)
            for section, listed in zip(capture.sections, per_section, strict=True)
            if listed
        ),
        error_lines=tuple(facts.error_lines.values()),
    )


def _summary_kind(section: Section) -> str:
    """The name a section of per-state counts gives the capture's source."""
    if section.counted_by is not None:
        return section.counted_by
    tool = section.command.tool if section.command is not None else None
    return registry.summary_format(tool) or "summary"


def _section_sockets(section: Section, notes: list[str]) -> tuple[list[Socket], bool, int]:
    """Turn a section's rows into sockets: decide what an absent owner or timer means. The
    section's rows are used up."""
    command = section.command
    flags = command.flags if command is not None else frozenset()
    rows = section.rows
    fmt = registry.BY_NAME.get(section.kind) if section.kind is not None else None
    owners_flag = fmt.owners_flag if fmt is not None else None
    owners_shown = any(row.holders is not None for row in rows) or (
        owners_flag is not None and owners_flag in flags
    )
    # A tool that shows a timer only while one runs (ss): with its flag, or once any row shows
    # one, a row without one has none pending.
    timers_flag = fmt.sparse_timers_flag if fmt is not None else None
    timers_shown = timers_flag is not None and (
        timers_flag in flags or any(row.timer is not None for row in rows)
    )
    sockets: list[Socket] = []
    unseen = 0
    guessed = 0
    shared_pids: dict[tuple[int, ...], tuple[int, ...]] = {}
    # Taken from the end of the reversed list, in the order read: each row is let go as soon
    # as its socket is made, so that a paste of a million rows never holds both whole.
    rows.reverse()
    while rows:
        row = rows.pop()
        timer = row.timer
        if timer is None and timers_shown:
            timer = TimerKind.NONE
        pids: tuple[int, ...] = ()
        if not owners_shown:
            owner = OwnerSource.UNKNOWN
        elif row.holders:
            owner = OwnerSource.FD
            pids = tuple(sorted({holder.pid for holder in row.holders}))
            # One tuple for the sockets of one process, as the live sources have it.
            pids = shared_pids.setdefault(pids, pids) if len(shared_pids) < 4096 else pids
        elif row.inode is not None:
            owner = OwnerSource.NONE if row.inode == 0 else OwnerSource.UNSEEN
        elif section.privileged is False:
            owner = OwnerSource.UNSEEN
        else:
            # ss/netstat run as root show every holder, so a row without one has none.
            owner = OwnerSource.NONE
            if section.privileged is None and row.state not in (
                TcpState.TIME_WAIT,
                TcpState.SYN_RECV,
            ):
                guessed += 1
        if owner is OwnerSource.UNSEEN:
            unseen += 1
        sockets.append(
            Socket(
                family=row.family,
                local=row.local,
                remote=row.remote,
                state=row.state,
                send_queue=row.send_queue,
                recv_queue=row.recv_queue,
                listen_backlog=row.listen_backlog,
                timer=timer,
                timer_seconds=row.timer_seconds,
                retransmits=row.retransmits,
                probes=row.probes,
                uid=row.uid,
                inode=row.inode,
                pids=pids,
                owner_source=owner,
                raw_state=row.raw_state,
                cookie=row.cookie,
                tcp_info=row.tcp_info,
                drops=row.drops,
                truncated=row.truncated,
            )
        )
    if guessed:
        notes.append(
            f"{guessed} row(s) from line {section.first_line} on name no process; they are "
            "read as held by none (as when ss/netstat run as root), but the paste does not "
            "show who ran the command: without root they may belong to other users"
        )
    return sockets, owners_shown, unseen


def _deduplicate(sections: list[list[Socket]]) -> tuple[list[Socket], int]:
    """Overlapping commands in one capture (``ss -nltp`` then ``ss -antp | grep PORT``, or
    ``netstat`` and ``ss`` rows in one block) list some sockets twice: keep the later row, the
    fresher look, per (local, remote, inode) -- per (local, remote) where either row shows no
    inode (another tool, or the same without -e): one connection's addresses belong to one
    socket at a time. Rows of one section are never merged -- a table may print two sockets
    alike (SO_REUSEPORT listeners, or addresses cut short) -- and neither are truncated rows."""
    keep: list[list[Socket]] = []
    seen_later: set[tuple[object, ...]] = set()
    # (local, remote) of every later row, and of those that showed no inode.
    seen_pair: set[tuple[object, ...]] = set()
    seen_pair_no_inode: set[tuple[object, ...]] = set()
    duplicates = 0
    for position, section_sockets in enumerate(reversed(sections), start=1):
        kept = []
        for sock in section_sockets:
            pair = (sock.local, sock.remote)
            if not sock.truncated and (
                (sock.local, sock.remote, sock.inode) in seen_later
                or pair in seen_pair_no_inode
                or (sock.inode is None and pair in seen_pair)
            ):
                duplicates += 1
            else:
                kept.append(sock)
        if position < len(sections):  # the first section has no earlier one to look here
            for later in kept:
                if later.truncated:
                    continue
                seen_later.add((later.local, later.remote, later.inode))
                seen_pair.add((later.local, later.remote))
                if later.inode is None:
                    seen_pair_no_inode.add((later.local, later.remote))
        keep.append(kept)
    return [sock for kept in reversed(keep) for sock in kept], duplicates
