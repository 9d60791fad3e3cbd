"""Plain lines for pipes: one self-contained record per line, no colour, never wrapped.

Every line starts with a word saying what it is, then ``key=value`` fields in a fixed order,
every field always present (``-`` when unknown). Three kinds of line (each shown wrapped here,
always one line in the output)::

    CRITICAL code=C state=S count=N pid=P pids=P,Q process=NAME endpoint=E subject=KIND
        blame=B summary="..." evidence="..." next="..." unchecked="..." netns=NS container=C
        pod=P outside_filter="..."
    STATE count=N local=A remote=B peers=K recv_q=R send_q=S backlog=L pid=P process=NAME
        user=U age_s=A netns=NS container=C pod=P unaccepted=U
    STATE local=A remote=B recv_q=R send_q=S backlog=L timer=T timer_s=X retrans=N pid=P
        process=NAME uid=U inode=I owner=O truncated=no age_s=A netns=NS container=C pod=P

The first is a finding (CRITICAL, WARNING or INFO). The second is a group: the sockets one
process holds in one state between two endpoints (``count=`` follows the state); the ephemeral
side's port is ``*``, and ``remote=*:* peers=K`` folds K client addresses into one line;
``unaccepted=U`` counts those of them no descriptor holds, credited to the listener's process
because they wait in its accept queue (``ss`` shows them without an owner). A finding's
``pids=`` is every process it is about; ``outside_filter=`` says, under a filter, how much of
what it is about the filter leaves out. The third is one socket (``tcphealth sockets``, or
``--sockets``); ``truncated=yes`` when the tool that printed it cut an address short, so its
port may be wrong. Sockets nobody holds have
``pid=- process=-``; several holders are listed with commas (``pid=812,813``).

``netns``, ``container`` and ``pod`` say where the record is, on a live run that read network
namespaces: the namespace's label (``host``, an ``ip netns`` name, ``pod:NS/NAME``,
``container:NAME``, ``net:[INODE]``), the container's name (or ``runtime:shortid``) and the
pod's ``namespace/name``; ``-`` where not known or not in one.

``age_s`` is how long the socket (of a group: its oldest) has been in its state at least: seen
so over several samples (``--samples``, ``watch``), or from the kernel's time since the last
ACK, which is a floor for ESTABLISHED, CLOSE_WAIT and FIN_WAIT2; ``-`` where neither tells.
A report made from several samples adds one line after the findings::

    SERIES samples=N window_s=W started=T0 ended=T1 counters="..." growth="..."

A value that is empty, ``-``, or holds a space, ``"``, ``=``, ``\\`` or any non-printable
character is written in double quotes with backslash escapes (``\\"``, ``\\\\``, ``\\n``,
``\\x1b``), so one record is always one line and ``grep CLOSE_WAIT`` finds whole records.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from tcphealth.model import Finding, Socket
from tcphealth.render.environment import Environment
from tcphealth.render.options import RenderOptions, View
from tcphealth.render.text import inert, utc_iso
from tcphealth.report import OwnerSummary, Report, SocketGroup

if TYPE_CHECKING:
    from tcphealth.series_facts import SeriesFacts  # only named here: a series loads it

_BARE = re.compile(r'[^\s"=\\]+')


def _escaped(text: str) -> str:
    return inert(text.replace("\\", "\\\\").replace('"', '\\"'))


def _quote(text: str) -> str:
    return f'"{_escaped(text)}"'


def value(item: object) -> str:
    """One field value as it appears after ``key=``.

    >>> value(None), value(12), value("java"), value("Web Content"), value("")
    ('-', '12', 'java', '"Web Content"', '""')
    """
    if item is None:
        return "-"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        return f"{item:.2f}".rstrip("0").rstrip(".")
    text = str(item)
    if text != "-" and text.isprintable() and _BARE.fullmatch(text):
        return text
    return _quote(text)


def listing(items: Sequence[str]) -> str:
    """A list field (evidence, next steps, unchecked, a series' counters and growth): the
    items joined by "; ", written as :func:`value` writes one value -- except that a ";" inside
    an item (a process name may hold one) is written ``\\x3b``, so that splitting the field on
    "; " always gives the items back, each then unescaped on its own.

    >>> listing(()), listing(("one",)), listing(("a b", "c"))
    ('-', 'one', '"a b; c"')
    >>> listing(("name=x; y", "z"))
    '"name=x\\\\x3b y; z"'
    """
    if not any(";" in item for item in items):
        return value("; ".join(items) or None)
    return '"' + "; ".join(_escaped(item).replace(";", "\\x3b") for item in items) + '"'


def _pids(pids: tuple[int, ...]) -> str | None:
    return ",".join(str(pid) for pid in pids) if pids else None


def finding_line(finding: Finding) -> str:
    subject = finding.subject
    evidence = [
        f"{item.name}={'-' if item.value is None else item.value}"
        + (f" ({item.detail})" if item.detail else "")
        for item in finding.evidence
    ]
    fields = (
        ("code", finding.code),
        ("state", finding.state.value if finding.state else None),
        ("count", finding.count),
        ("pid", subject.pid),
        ("pids", _pids(subject.pids)),
        ("process", subject.process),
        ("endpoint", subject.endpoint),
        ("subject", subject.kind.value),
        ("blame", finding.blame.value),
        ("summary", finding.summary),
    )
    lists = (
        ("evidence", evidence),
        ("next", _steps(finding.next_steps)),
        ("unchecked", finding.unchecked),
    )
    places = (("netns", finding.netns), ("container", finding.container), ("pod", finding.pod))
    return (
        finding.severity.label
        + "".join(f" {key}={value(item)}" for key, item in fields)
        + "".join(f" {key}={listing(items)}" for key, items in lists)
        + "".join(f" {key}={value(item)}" for key, item in places)
        + f" outside_filter={listing(finding.outside_filter)}"
    )


def _steps(steps: tuple[str, ...]) -> list[str]:
    """The next steps as they are listed on one line: a step written as a sentence loses its
    final period, or the line would read "... idle connections).; No sysctl ..."."""
    return [step[:-1] if step.endswith(".") else step for step in steps]


_Place = tuple[str | None, str | None, str | None]
_NOWHERE: _Place = (None, None, None)


def group_line(group: SocketGroup, owner: OwnerSummary, report: Report | None = None) -> str:
    process = owner.process
    where = (
        _NOWHERE
        if report is None
        else report.place(group.netns, (process.pid,) if process is not None else ())
    )
    fields = (
        ("count", group.count),
        ("local", str(group.local)),
        ("remote", group.remote_text),
        ("peers", group.peers),
        ("recv_q", group.recv_queue_max),
        ("send_q", group.send_queue_max),
        ("backlog", group.listen_backlog),
        ("pid", process.pid if process else None),
        ("process", process.name if process else None),
        ("user", process.user if process else None),
        ("age_s", _age(group.oldest_seconds)),
        ("netns", where[0]),
        ("container", where[1]),
        ("pod", where[2]),
        ("unaccepted", group.unaccepted),
    )
    return group.state.value + "".join(f" {key}={value(item)}" for key, item in fields)


def socket_line(
    report: Report,
    sock: Socket,
    places: dict[tuple[int | None, tuple[int, ...]], _Place] | None = None,
) -> str:
    key = (sock.netns, sock.pids)
    where = places.get(key) if places is not None else None
    if where is None:
        where = report.place(sock.netns, sock.pids)
        if places is not None:
            places[key] = where
    fields = (
        ("local", str(sock.local)),
        ("remote", str(sock.remote)),
        ("recv_q", sock.recv_queue),
        ("send_q", sock.send_queue),
        ("backlog", sock.listen_backlog),
        ("timer", sock.timer.value if sock.timer else None),
        ("timer_s", sock.timer_seconds),
        ("retrans", sock.retransmits),
        ("pid", _pids(sock.pids)),
        ("process", report.process_names(sock.pids)),
        ("uid", sock.uid),
        ("inode", sock.inode),
        ("owner", sock.owner_source.value),
        ("truncated", "yes" if sock.truncated else "no"),
        ("age_s", _age(report.age_at_least(sock))),
        ("netns", where[0]),
        ("container", where[1]),
        ("pod", where[2]),
    )
    return sock.state.value + "".join(f" {key}={value(item)}" for key, item in fields)


def _age(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def series_line(series: SeriesFacts) -> str:
    counters = [
        f"{delta.name}=+{delta.delta} ({delta.per_second:.1f}/s)"
        for delta in series.counter_deltas
        if delta.delta  # the JSON lists the counters that stayed still too
    ]
    growth = [
        f"pid {g.pid} {g.state.value} {g.first}->{g.last} ({g.per_minute:+.1f}/min)"
        for g in series.growth
    ]
    fields = (
        ("samples", series.samples),
        ("window_s", round(series.window_seconds, 1)),
        ("started", utc_iso(series.started_at)),
        ("ended", utc_iso(series.ended_at)),
    )
    return (
        "SERIES"
        + "".join(f" {key}={value(item)}" for key, item in fields)
        + f" counters={listing(counters)} growth={listing(growth)}"
    )


def lines(report: Report, options: RenderOptions) -> Iterator[str]:
    """The records, one at a time, without the newline."""
    if options.view is not View.SOCKETS:
        for finding in report.findings:
            yield finding_line(finding)
        if report.series is not None:
            yield series_line(report.series)
    if options.view is View.REPORT:
        for owner in (*report.processes, report.unowned):
            for group in owner.groups:
                yield group_line(group, owner, report)
    if options.view is View.SOCKETS or options.with_sockets:
        places: dict[tuple[int | None, tuple[int, ...]], _Place] = {}
        for sock in itertools.islice(report.sockets, options.socket_limit(table=False)):
            yield socket_line(report, sock, places)


def render(report: Report, options: RenderOptions, env: Environment) -> None:
    out = env.stdout
    for line in lines(report, options):  # streamed: 300,000 sockets are 300,000 writes
        out.write(line + "\n")
