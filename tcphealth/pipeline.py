"""The one-way flow of a run, callable without the command line:
snapshot (or a series of them) -> filter -> diagnose -> report.

Also where a run's samples come from (:class:`Inputs`), whether several samples are diagnosed
with time or only the latest (:func:`diagnose_samples`), and the ``watch`` loop, which follows
the host sample after sample (:func:`follow`). The command line only parses options into these
values, hands the reports to a renderer and turns errors into exit codes."""

from __future__ import annotations

import re
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tcphealth import gcpause, namespaced, sources
from tcphealth.diagnose import diagnose
from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.timeline import Age, ConnectionKey, HeldSince, Tracker
from tcphealth.filters import (
    SocketFilter,
    apply_filter,
    as_options,
    select_findings,
    selection_is_empty,
)
from tcphealth.model import Finding, Snapshot, Sysctls
from tcphealth.report import Report, build_report
from tcphealth.series_facts import SeriesFacts

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    from tcphealth.columnar import SocketTable


def analyse(
    snapshot: Snapshot,
    flt: SocketFilter | None = None,
    thresholds: Thresholds | None = None,
    *,
    grouped: bool = True,
) -> Report:
    """Diagnose the whole snapshot, then show what ``flt`` selects: the matching sockets and
    the findings about them -- each the same finding an unfiltered run makes. ``grouped``:
    see :func:`~tcphealth.report.build_report`."""
    flt = flt or SocketFilter()
    with gcpause.paused():  # indexes and groups over every socket: no cycles among them
        if snapshot.namespaces:  # each namespace diagnosed with its own sysctls and counters
            whole = _by_namespace(snapshot, lambda part: diagnose(part, thresholds))
            narrowed = apply_filter(snapshot, flt)
            # What each namespace shows under the filter, chosen once: the processes its
            # findings name are listed, and no others (a finding the filter hides would list
            # its process as one with "nothing wrong").
            selected = {
                inode: (part, select_findings(found, flt, part, narrowed))
                for inode, (part, found) in whole.items()
            }
            narrowed = _with_named_processes(snapshot, narrowed, selected)

            def shown(part: Snapshot) -> list[Finding]:
                return selected[part.namespaces[0].inode][1]

            report = namespaced.analyse(narrowed, shown, flt.describe(), grouped=grouped)
            return replace(report, empty_selection=_empty(snapshot, narrowed, flt))
        return _narrowed_report(snapshot, diagnose(snapshot, thresholds), flt, grouped=grouped)


def analyse_table(
    snapshot: Snapshot,
    table: SocketTable,
    thresholds: Thresholds | None = None,
    lazy: Sequence[int] = (),
) -> Report:
    """:func:`analyse` of a whole snapshot given as a table (every socket as columns; the
    snapshot lists as objects those in states not in ``lazy``), without a filter or the
    groups a report's tables need: the report the metrics read, made as ``analyse`` of the
    whole snapshot makes it (tests/test_lean_pipeline.py compares the two)."""
    with gcpause.paused():
        findings = diagnose(snapshot, thresholds, table=table, lazy=lazy)
        if not snapshot.namespaces:
            return build_report(snapshot, findings, grouped=False, table=table)
        if len(snapshot.namespaces) != 1:
            raise ValueError("a table is of one network namespace")
        # namespaced.analyse of one namespace: each finding placed in it.
        namespace = snapshot.namespaces[0]
        by_pid = {process.pid: process for process in snapshot.processes}
        placed = [namespaced.place(finding, namespace, by_pid) for finding in findings]
        return replace(
            build_report(snapshot, placed, grouped=False, table=table),
            namespaces=snapshot.namespaces,
        )


def analyse_series(
    series: Sequence[Snapshot],
    flt: SocketFilter | None = None,
    thresholds: Thresholds | None = None,
    ages: Mapping[ConnectionKey, Age] | None = None,
    *,
    grouped: bool = True,
    held: HeldSince | None = None,
) -> Report:
    """Like :func:`analyse` for several samples of one host, oldest first: the report is of
    the latest, with the findings time corrects and adds (see :mod:`tcphealth.diagnose.series`).
    ``ages`` comes from a tracker that followed the host for longer (``watch``), and ``held``
    from the looks before (see :class:`~tcphealth.diagnose.timeline.HeldSince`)."""
    # Loaded here, not with this module: a one-snapshot run has no use for it.
    from tcphealth.diagnose.series import diagnose_series

    flt = flt or SocketFilter()
    with gcpause.paused():
        latest = series[-1]
        if latest.namespaces:
            from tcphealth.diagnose.timeline import ages_over

            # Ages over the whole host's samples: a socket's key holds no namespace, but its
            # cookie (or inode) is unique on the host.
            every_age = ages_over(series) if ages is None else ages
            whole = _series_by_namespace(series, thresholds, every_age, held)
            narrowed = [apply_filter(snapshot, flt) for snapshot in series]
            selected = {
                inode: (part, select_findings(found, flt, part, narrowed[-1]), facts)
                for inode, (part, found, facts) in whole.items()
            }
            narrowed[-1] = _with_named_processes(
                latest,
                narrowed[-1],
                {inode: (part, shown) for inode, (part, shown, _) in selected.items()},
            )

            def diagnosis(part: Sequence[Snapshot]) -> tuple[list[Finding], SeriesFacts]:
                _, shown, facts = selected[part[-1].namespaces[0].inode]
                return shown, facts

            report = namespaced.analyse_series(narrowed, diagnosis, flt.describe(), grouped=grouped)
            report = replace(report, empty_selection=_empty(latest, narrowed[-1], flt))
            return _history_of_selection(report, narrowed) if flt.active else report
        findings, facts = diagnose_series(series, thresholds, ages, held)
        if not flt.active:
            return _narrowed_report(latest, findings, flt, facts, grouped=grouped)
        narrowed = [apply_filter(sample, flt) for sample in series]
        report = _narrowed_report(
            latest, findings, flt, facts, grouped=grouped, narrowed=narrowed[-1]
        )
        return _history_of_selection(report, narrowed)


def _history_of_selection(report: Report, selected: Sequence[Snapshot]) -> Report:
    """``report`` whose states over the samples count what a filter selected of each
    (``selected``), as the rest of a filtered report does. The diagnosis went over the whole
    host; shown under "filtered: pid=...", its host-wide counts read as the selection's."""
    if report.series is None:
        return report
    history = tuple(
        (sample.host.taken_at, dict(Counter(sock.state for sock in sample.sockets)))
        for sample in selected
    )
    return replace(report, series=replace(report.series, state_history=history))


def _narrowed_report(
    snapshot: Snapshot,
    findings: Sequence[Finding],
    flt: SocketFilter,
    series: SeriesFacts | None = None,
    *,
    grouped: bool = True,
    narrowed: Snapshot | None = None,
) -> Report:
    """The report of what ``flt`` selects from ``snapshot`` (``narrowed``, where the caller
    has it already), whose whole diagnosis is ``findings``."""
    if narrowed is None:
        narrowed = apply_filter(snapshot, flt)
    shown = select_findings(findings, flt, snapshot, narrowed)
    narrowed = _with_named_processes(snapshot, narrowed, {0: (snapshot, shown)})
    return build_report(
        narrowed,
        shown,
        filters=flt.describe(),
        series=series,
        empty_selection=_empty(snapshot, narrowed, flt),
        grouped=grouped,
    )


def _with_named_processes(
    snapshot: Snapshot, narrowed: Snapshot, found: Mapping[int, tuple[Snapshot, list[Finding]]]
) -> Snapshot:
    """``narrowed`` still listing the processes the findings are about (by name), whether or
    not the filter kept their sockets, so no finding names a process the report does not
    know."""
    if narrowed is snapshot:
        return narrowed
    listed = {process.pid for process in narrowed.processes}
    named = {
        pid
        for _, findings in found.values()
        for finding in findings
        for pid in finding.subject.pids
    }
    named -= listed
    if not named:
        return narrowed
    extra = tuple(process for process in snapshot.processes if process.pid in named)
    return replace(narrowed, processes=(*narrowed.processes, *extra))


def _empty(snapshot: Snapshot, narrowed: Snapshot, flt: SocketFilter) -> str | None:
    return as_options(flt) if selection_is_empty(snapshot, narrowed, flt) else None


def _by_namespace(
    snapshot: Snapshot, diagnosis: Callable[[Snapshot], list[Finding]]
) -> dict[int, tuple[Snapshot, list[Finding]]]:
    """The whole diagnosis of each namespace's part (as :func:`namespaced.analyse` splits it),
    by the namespace's inode."""
    if len(snapshot.namespaces) == 1:
        return {snapshot.namespaces[0].inode: (snapshot, diagnosis(snapshot))}
    return {
        namespace.inode: (part, diagnosis(part)) for namespace, part in namespaced.split(snapshot)
    }


def _series_by_namespace(
    series: Sequence[Snapshot],
    thresholds: Thresholds | None,
    ages: Mapping[ConnectionKey, Age],
    held: HeldSince | None = None,
) -> dict[int, tuple[Snapshot, list[Finding], SeriesFacts]]:
    """Like :func:`_by_namespace` over several samples (as :func:`namespaced.analyse_series`
    splits them): each namespace of the latest diagnosed over its part of every sample."""
    from tcphealth.diagnose.series import diagnose_series

    parts_of = [
        {namespace.inode: part for namespace, part in namespaced.split(sample)}
        if sample.namespaces
        else {}
        for sample in series
    ]
    whole: dict[int, tuple[Snapshot, list[Finding], SeriesFacts]] = {}
    for namespace, part in namespaced.split(series[-1]):
        earlier = [parts.get(namespace.inode) for parts in parts_of[:-1]]
        sub = [sample for sample in earlier if sample is not None] + [part]
        found, facts = diagnose_series(sub, thresholds, ages, held)
        whole[namespace.inode] = (part, found, facts)
    return whole


# --- where the samples come from, and what is made of them --------------------------------------


class UsageConflict(ValueError):
    """Options that cannot go together (the command line reports it as a usage error)."""


@dataclass(frozen=True)
class Inputs:
    """Where a run's snapshot comes from: a file or standard input (``from_file``), else this
    host (or the network namespace ``netns``) through ``source``. Unreadable input raises
    :class:`~tcphealth.errors.InputError` or :class:`~tcphealth.errors.SourceUnavailableError`."""

    from_file: str | None = None
    source: str = "auto"
    proc_root: Path = Path("/proc")
    no_processes: bool = False
    input_format: str = "auto"
    strict: bool = False
    # None or auto: every namespace as root in the host's, else the caller's; all; self; or
    # one NAME (live: entered; with from_file: the part of the snapshot in it).
    netns: str | None = None
    node_root: Path = Path("/")  # where the kubelet's and the runtimes' files are

    def load(self) -> Snapshot:
        """The one snapshot: read from the file, or collected now."""
        if self.from_file is not None:
            # sys.stdin now, not the one bound as a default when sources was imported
            loaded = sources.load(
                self.from_file, sys.stdin, input_format=self.input_format, strict=self.strict
            )
            return self._one_namespace(loaded)
        scope = self.netns if self.netns in sources.NETNS_SCOPES else "auto"
        return sources.collect_live(
            self.source,
            self.proc_root,
            with_processes=not self.no_processes,
            netns=None if self.netns in sources.NETNS_SCOPES else self.netns,
            scope=scope,
            node_root=self.node_root,
        )

    def _one_namespace(self, snapshot: Snapshot) -> Snapshot:
        """With --from, --netns NAME keeps the part of the snapshot in that namespace."""
        if self.netns is None or self.netns in sources.NETNS_SCOPES:
            return snapshot
        from tcphealth.filters import namespace_names, select_namespace

        selected = select_namespace(snapshot, self.netns)
        if selected is None:
            known = ", ".join(namespace_names(ns)[0] for ns in snapshot.namespaces) or "none"
            raise UsageConflict(
                f"--netns {self.netns}: no such network namespace in {self.from_file} "
                f"(it holds: {known})"
            )
        return selected

    def load_series(self, samples: int = 1, interval: float = 1.0) -> list[Snapshot]:
        """The samples to diagnose, oldest first: those of a series file (or the captures of a
        paste) given with --from, else ``samples`` looks at this host ``interval`` apart."""
        if self.from_file is None:
            return list(self.live_samples(samples, interval))
        if samples > 1:
            raise UsageConflict(
                "--samples looks at this host again and again; --from reads samples "
                "already taken (a series file from 'tcphealth snapshot --samples')"
            )
        loaded = sources.load_series(
            self.from_file, sys.stdin, input_format=self.input_format, strict=self.strict
        )
        return [self._one_namespace(sample) for sample in loaded]

    def live_samples(self, count: int | None, interval: float) -> Iterator[Snapshot]:
        """Samples of this host (or of --netns), ``interval`` seconds apart; ``None``: no end."""
        return sources.sample_live(count, interval, self.load)

    def sysctls(self) -> Sysctls | None:
        """The kernel settings of the snapshot --from names, else of this host's /proc (or the
        copy at ``proc_root``); None where there is none to read (not Linux)."""
        if self.from_file is not None:
            return self.load().sysctls
        return sources.host_sysctls(self.proc_root)


@dataclass(frozen=True)
class Taken:
    """The samples a run took, oldest first, and whether Ctrl-C ended the run before all
    ``planned`` were taken."""

    samples: list[Snapshot]
    planned: int

    @property
    def cut_short(self) -> bool:
        return len(self.samples) < self.planned


def take_samples(
    inputs: Inputs,
    count: int,
    interval: float,
    on_sample: Callable[[int], None] | None = None,
    keep_at_least: int = 2,
) -> Taken:
    """``count`` samples of this host ``interval`` apart, ``on_sample(number)`` called after
    each (the progress bar). Ctrl-C keeps what was taken when that is ``keep_at_least`` or more
    (two samples already say what changed between them); with fewer it is raised on."""
    taken: list[Snapshot] = []
    try:
        for snapshot in inputs.live_samples(count, interval):
            taken.append(snapshot)
            if on_sample is not None:
                on_sample(len(taken))
    except KeyboardInterrupt:
        if len(taken) < keep_at_least:
            raise
    return Taken(taken, count)


@dataclass(frozen=True)
class Diagnosed:
    """A report, the samples it was made of, and the snapshot whose notes belong with it;
    ``planned`` is how many samples the run meant to take (more than it has if cut short)."""

    report: Report
    samples: Sequence[Snapshot]
    noted: Snapshot
    planned: int = 1

    @property
    def cut_short(self) -> bool:
        return len(self.samples) < self.planned


def diagnose_samples(
    samples: Sequence[Snapshot],
    source_name: str,
    flt: SocketFilter | None = None,
    thresholds: Thresholds | None = None,
    *,
    grouped: bool = True,
) -> Diagnosed:
    """Samples with times between them are diagnosed with time; otherwise (one snapshot, or
    pasted captures without printed times) the latest alone, with a note saying so.
    ``source_name`` is the file they came from, for that note. ``grouped=False``: a report for
    the metrics, without the groups of sockets no metric reads."""
    if sources.is_timed_series(samples):
        report = analyse_series(samples, flt, thresholds, grouped=grouped)
        return Diagnosed(report, samples, samples[-1])
    snapshot = sources.latest_of(source_name, samples)
    return Diagnosed(analyse(snapshot, flt, thresholds, grouped=grouped), samples, snapshot)


def report_of(
    inputs: Inputs,
    flt: SocketFilter | None = None,
    thresholds: Thresholds | None = None,
    samples: int = 1,
    interval: float = 1.0,
    on_sample: Callable[[int], None] | None = None,
) -> Diagnosed:
    """One snapshot, or several samples diagnosed with time (--samples, a series file).
    Live samples call ``on_sample(number)`` as each is taken; Ctrl-C after two or more
    diagnoses those (the result says it was cut short)."""
    if inputs.from_file is None and samples > 1:
        taken = take_samples(inputs, samples, interval, on_sample)
        diagnosed = diagnose_samples(taken.samples, "-", flt, thresholds)
        return replace(diagnosed, planned=taken.planned)
    series = inputs.load_series(samples, interval)
    return diagnose_samples(series, inputs.from_file or "-", flt, thresholds)


@dataclass(frozen=True)
class WatchedSample:
    """One look of ``watch``: its number (from 1), the report of the recent window, the
    notes of a kind not seen in an earlier sample, and when the first sample was taken."""

    number: int
    report: Report
    new_notes: tuple[str, ...]
    first_taken_at: float


def follow(
    samples: Iterable[Snapshot],
    flt: SocketFilter | None = None,
    thresholds: Thresholds | None = None,
    window: int = 5,
    count: int | None = None,
) -> Iterator[WatchedSample]:
    """Diagnose each sample with the ``window`` before it, and with the age of every
    connection since it was first seen; stops after ``count`` samples (None: when
    ``samples`` ends). A sample is taken only when the one before has been handled."""
    tracker = Tracker()
    held = HeldSince()
    recent: deque[Snapshot] = deque(maxlen=window)
    noted: set[str] = set()
    first_at: float | None = None
    for number, snapshot in enumerate(samples, start=1):
        first_at = snapshot.host.taken_at if first_at is None else first_at
        ages = tracker.observe(snapshot)
        if recent:
            held.forget_before(recent[-1].host.taken_at)
        recent.append(snapshot)
        report = analyse_series(list(recent), flt, thresholds, ages, held=held)
        new_notes: list[str] = []
        for note in report.notes:  # the snapshot's, about the sockets the filter kept
            # Each kind of note once, not once per sample: "12 socket(s) ..." and
            # "13 socket(s) ..." say the same thing.
            kind = re.sub(r"\d+", "N", note)
            if kind not in noted:
                noted.add(kind)
                new_notes.append(note)
        yield WatchedSample(number, report, tuple(new_notes), first_at)
        if count and number >= count:
            return
