"""Sources turn something -- the live host, a saved file, pasted text -- into a
:class:`Snapshot`.

Each source is a peer module; this package only chooses between them, so the CLI never needs
to know how a snapshot was made. Only the live Linux sources are imported up front; the others
(psutil, snapshot files, pasted text, namespaces) when a run asks for them, so that a live run
does not pay for importing what it never uses.
"""

from __future__ import annotations

import codecs
import itertools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO

from tcphealth import reading
from tcphealth.errors import InputError, SourceUnavailableError
from tcphealth.model import Snapshot, Sysctls
from tcphealth.sources import netlink, procfs
from tcphealth.sources.text import registry as text_registry

LIVE_SOURCES = ("auto", "netlink", "procfs", "psutil")

# What `load` reads: ``auto`` recognises each by itself; the others force one. The paste
# formats come from their registry, which imports none of their readers.
INPUT_FORMATS = ("auto", "snapshot", "proc", *text_registry.CHOICES)
INPUT_FORMATS_HELP = (
    "What --from holds; auto recognises each by itself. snapshot: a tcphealth snapshot; "
    "proc: a copied /proc or /proc/net/tcp{,6}; "
    f"{text_registry.choices_help()}."
)

# A pasted text file is read whole; refuse something that cannot be a paste.
MAX_TEXT_BYTES = 256 << 20
TEXT_LIMIT = reading.Limit(MAX_TEXT_BYTES, "pasted text")


# Which network namespaces a live run reads: ``auto`` every one when run as root in the host's
# (else the caller's, with a note that others exist), ``all`` every one from anywhere (root),
# ``self`` the caller's alone.
NETNS_SCOPES = ("auto", "all", "self")


def collect_live(
    source: str = "auto",
    proc_root: Path = Path("/proc"),
    *,
    with_processes: bool = True,
    netns: str | None = None,
    scope: str | None = None,
    node_root: Path = Path("/"),
) -> Snapshot:
    """Look at this host now, or into the network namespace ``netns`` (a name from
    ``ip netns list`` or a path like /proc/PID/ns/net).

    ``scope`` (one of :data:`NETNS_SCOPES`) asks for the namespaces to be found, named and,
    where it says so, all read (:mod:`tcphealth.sources.namespaces`); ``None`` reads the
    caller's namespace and says nothing of namespaces, as before they were known. ``node_root``
    is where the kubelet's and the runtimes' files are looked for (pod and container names)."""
    if netns is not None:
        from tcphealth.sources import namespaces
        from tcphealth.sources import netns as netns_module

        with netns_module.entered(netns):
            snapshot = _collect(source, proc_root, with_processes)
        snapshot = replace(
            snapshot, host=replace(snapshot.host, source=f"{snapshot.host.source}:netns={netns}")
        )
        return namespaces.entered_namespace(snapshot, netns, netns_module.namespace_path(netns))
    if scope is None or proc_root != Path("/proc") or not os.path.isdir("/proc/self/ns"):
        return _collect(source, proc_root, with_processes)
    if scope not in NETNS_SCOPES:
        raise ValueError(f"unknown namespace scope {scope!r}")
    from tcphealth.sources import namespaces

    discovery = namespaces.discover(proc_root)
    root = os.geteuid() == 0
    every = root and (scope == "all" or (scope == "auto" and discovery.own == discovery.host))
    if every and source in ("auto", "netlink") and netlink.available():
        return namespaces.collect_all(
            proc_root, with_processes=with_processes, node_root=node_root, discovery=discovery
        )
    snapshot = _collect(source, proc_root, with_processes)
    labelled = namespaces.this_namespace(
        snapshot, proc_root, node_root=node_root, discovery=discovery, note_others=scope != "self"
    )
    if every:  # root, but the source cannot enter namespaces
        labelled = replace(
            labelled,
            notes=(*labelled.notes, f"--source {source} reads only this network namespace"),
        )
    return labelled


def sample_live(
    count: int | None,
    interval: float,
    collect: Callable[[], Snapshot],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Snapshot]:
    """``count`` samples (``None``: without end) made by ``collect``, ``interval`` seconds apart
    from the start of one to the start of the next; a collection slower than the interval is
    followed by the next at once, never by a burst to catch up."""
    for number in itertools.count(1) if count is None else range(1, count + 1):
        started = clock()
        yield collect()
        if count is not None and number >= count:
            return
        sleep(max(0.0, interval - (clock() - started)))


def is_timed_series(series: Sequence[Snapshot]) -> bool:
    """Several samples with times that say how far apart they were: a series to diagnose with
    time. Captures pasted from one file carry the file's time unless the paste printed when
    each was taken (``date``), so only known times count."""
    return (
        len(series) > 1
        and all(sample.host.taken_at_known for sample in series)
        and all(
            later.host.taken_at > earlier.host.taken_at
            for earlier, later in itertools.pairwise(series)
        )
    )


def latest_of(path: Path | str, series: Sequence[Snapshot]) -> Snapshot:
    """The last of several captures, with a note saying the earlier ones were not used."""
    last = series[-1]
    if len(series) == 1:
        return last
    earlier_notes = [
        note for snapshot in series[:-1] for note in snapshot.notes if ": line skipped: " in note
    ]
    if is_timed_series(series):
        note = f"{_where(path)}: a series of {len(series)} samples; only the latest is used here"
    else:
        note = (
            f"{_where(path)}: {len(series)} captures were found (a repeated header, command or "
            "'---'); only the last is diagnosed, the earlier ones compared with it (what "
            "stayed, what kept resending)"
        )
    return replace(
        last,
        notes=(note, *earlier_notes, *last.notes),
        skipped_lines=sum(snapshot.skipped_lines for snapshot in series),
        # Untimed captures are not a series, but what they listed can still be compared.
        earlier_listings=()
        if is_timed_series(series)
        else tuple(snapshot.sockets for snapshot in series[:-1]),
    )


def _collect(source: str, proc_root: Path, with_processes: bool) -> Snapshot:
    """Look at this host now. ``auto`` asks the kernel over netlink (what ``ss`` uses), falls
    back to /proc/net/tcp where netlink is not offered, and to psutil where there is no /proc."""
    if source not in LIVE_SOURCES:
        raise ValueError(f"unknown source {source!r}")
    has_proc = (proc_root / "net" / "tcp").exists()
    if source == "auto":
        # netlink reads the namespace of this process, not of a copied tree: only for /proc.
        if proc_root == Path("/proc") and netlink.available():
            return netlink.collect(proc_root, with_processes=with_processes)
        source = "procfs" if has_proc else "psutil"
    if source == "netlink":
        if not netlink.available():
            raise SourceUnavailableError("netlink sock_diag is not available on this host")
        return netlink.collect(proc_root, with_processes=with_processes)
    if source == "procfs":
        if not has_proc:
            raise SourceUnavailableError(f"{proc_root}/net/tcp does not exist on this host")
        return procfs.collect(proc_root, with_processes=with_processes)
    from tcphealth.sources import psutil_source

    return psutil_source.collect(with_processes=with_processes)


def load(
    path: Path | str,
    stdin: IO[str] | None = None,
    *,
    input_format: str = "auto",
    strict: bool = False,
) -> Snapshot:
    """Read one snapshot from ``path`` (``-`` for standard input): a saved snapshot, a copied
    /proc tree (a directory), a copy of /proc/net/tcp{,6}, or ``ss``/``netstat`` text.

    Where the text holds several captures (see :func:`load_series`), the last one is returned
    with a note saying how many were found; its notes and ``skipped_lines`` cover every line
    skipped in the whole file."""
    return latest_of(path, load_series(path, stdin, input_format=input_format, strict=strict))


def load_series(
    path: Path | str,
    stdin: IO[str] | None = None,
    *,
    input_format: str = "auto",
    strict: bool = False,
) -> list[Snapshot]:
    """Every capture in ``path``, oldest first: the samples of a series file (``tcphealth
    snapshot --samples``), one snapshot per capture of a paste (a header repeated, ``sl``
    restarting at 0, the same command run again), else a list of one.

    Raises :class:`InputError` (the CLI exits 3) when the input cannot be read as the format,
    and ``ValueError`` for an ``input_format`` not in :data:`INPUT_FORMATS`."""
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"unknown input format {input_format!r}")
    where = _where(path)
    if str(path) != "-" and Path(path).is_dir():
        if input_format not in ("auto", "proc"):
            raise InputError(where, f"a directory, not {input_format} output")
        return [_proc_tree(Path(path), strict=strict)]
    # Every input is opened, looked at (its first bytes) and then read as it comes: a
    # snapshot, a /proc table or a paste is never held whole beside what is made of it,
    # whether it is a file, standard input or a pipe.
    with reading.open_input(path, stdin) as opened:
        return _read_opened(opened, str(path), input_format, strict=strict)


def _read_opened(
    opened: reading.Opened, name: str, input_format: str, *, strict: bool
) -> list[Snapshot]:
    """:func:`load_series` of an opened input, told apart by its head (``name`` is the path
    as given: ``x.json`` is a snapshot)."""
    from tcphealth.sources import snapshot_file
    from tcphealth.sources.text import detect as text_detect

    where = opened.where
    head = opened.head
    utf16 = _utf16(head)
    body = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    # lsof -J/-j output is JSON too, and a paste: it is never taken for a snapshot.
    lsof_json = body.startswith(tuple(mark.encode() for mark in text_detect.LSOF_JSON))
    starts_json = body.startswith(b"{") and not lsof_json
    if input_format == "snapshot" or (
        input_format == "auto" and ((name.endswith(".json") and not lsof_json) or starts_json)
    ):
        # What starts like a snapshot may be as large as a snapshot file.
        return snapshot_file.snapshots_of_chunks(opened.chunks(snapshot_file.SNAPSHOT_LIMIT), where)
    # Windows PowerShell's `netstat > file` writes UTF-16; anything else is read as UTF-8.
    encoding = "utf-16" if utf16 else "utf-8"
    kind = input_format
    if input_format == "auto":
        # Told by the first line, as far as the head holds it (a first line of more than
        # 64 KiB is no table header; where the head is all blank space, the rest is a paste).
        found = text_detect.detect(head.decode(encoding, errors="replace"))
        if found == text_detect.SNAPSHOT:  # a snapshot written as UTF-16
            counted = _CountedText(opened.chunks(TEXT_LIMIT), encoding)
            return snapshot_file.snapshots_of_text(counted, where)
        kind = "proc" if found == text_detect.PROC else "text"
    return _text_stream(opened, kind, encoding, strict=strict)


def _text_stream(
    opened: reading.Opened, kind: str, encoding: str, *, strict: bool
) -> list[Snapshot]:
    """A paste or a /proc table copy read line by line as it is read: at the 256 MiB limit,
    neither its bytes nor its text nor a list of its lines is ever held whole. ``kind`` is
    ``proc`` or a paste format (``text``: any)."""
    from tcphealth.sources import text
    from tcphealth.sources.text.lines import lines_of

    where = opened.where
    counted = _CountedText(opened.chunks(TEXT_LIMIT), encoding)
    try:
        return text.read_lines(
            lines_of(counted), where, input_format=kind, strict=strict, taken_at=opened.taken_at
        )
    except InputError as error:
        if error.line is not None or counted.failed:
            raise  # a row, or the reading itself (over the limit, empty, unreadable)
        try:
            for _ in counted:  # the rest is counted too
                pass
        except InputError:
            raise error from None
        binary = _binary_note_of(counted.nuls, counted.replaced - counted.real)
        if binary and encoding == "utf-8":  # say why nothing was found
            raise InputError(where, f"{error.problem}; {binary}") from None
        raise


class _CountedText:
    """The text of chunks in ``encoding``, decoded as they come, counting (for UTF-8) what
    :func:`_binary_note_of` needs: NUL bytes, and sequences that are not UTF-8."""

    def __init__(self, chunks: Iterator[bytes], encoding: str = "utf-8") -> None:
        self.chunks = chunks
        self.nuls = 0
        self.replaced = 0  # U+FFFD in the text
        self.real = 0  # of those, the ones the input held (EF BF BD)
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._tail = b""  # the last bytes of the previous chunk, for an EF BF BD across two
        self.failed = False  # the chunks themselves were refused (see reading.Opened.chunks)

    def __iter__(self) -> Iterator[str]:
        for chunk in self._read():
            self.nuls += chunk.count(b"\0")
            joined = self._tail + chunk[:2]
            self.real += joined.count(b"\xef\xbf\xbd") + chunk.count(b"\xef\xbf\xbd")
            self._tail = (self._tail + chunk)[-2:]
            text = self._decoder.decode(chunk)
            self.replaced += text.count("\ufffd")
            if text:
                yield text
        text = self._decoder.decode(b"", final=True)
        self.replaced += text.count("\ufffd")
        if text:
            yield text

    def _read(self) -> Iterator[bytes]:
        try:
            yield from self.chunks
        except InputError:
            self.failed = True
            raise


def _where(path: Path | str) -> str:
    return reading.where_of(path)


def _utf16(data: bytes) -> bool:
    # Windows PowerShell's `netstat > file` writes UTF-16.
    return b"\0" in data[:4096] and data[:2] in (b"\xff\xfe", b"\xfe\xff")


def _binary_note_of(nuls: int, undecodable: int) -> str | None:
    parts = []
    if nuls:
        parts.append(f"{nuls:,} NUL byte{'s' if nuls != 1 else ''}")
    if undecodable:
        parts.append(f"{undecodable:,} byte sequence{'s' if undecodable != 1 else ''} not UTF-8")
    return f"it holds binary data ({', '.join(parts)}), not text" if parts else None


def _proc_tree(root: Path, *, strict: bool) -> Snapshot:
    """A copied /proc: net/tcp{,6} and the counters; owners only if pid directories exist."""
    try:
        with os.scandir(root) as entries:  # closed even when any() stops at the first pid
            has_pids = any(
                entry.name.isascii() and entry.name.isdigit() and entry.is_dir()
                for entry in entries
            )
    except OSError as error:  # a copied tree may hold a symlink loop where a pid should be
        raise InputError(error.filename or str(root), error.strerror or str(error)) from None
    snapshot = procfs.collect(root, with_processes=has_pids, strict=strict)
    if not has_pids:
        snapshot = replace(
            snapshot,
            notes=(
                *snapshot.notes,
                f"{root}: no /proc/PID directories in the copy, so owners are unknown",
            ),
        )
    return snapshot


def host_sysctls(proc_root: Path = Path("/proc")) -> Sysctls | None:
    """The kernel settings under ``proc_root`` (this host's /proc, or a copy of it); None where
    there is no ``sys/net`` to read (not Linux), so a caller falls back to named defaults."""
    if not (proc_root / "sys" / "net").is_dir():
        return None
    return procfs.read_sysctls(proc_root)
