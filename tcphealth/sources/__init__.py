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
            "'---'); only the last is diagnosed"
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
    from tcphealth.sources import snapshot_file, text
    from tcphealth.sources.text import detect as text_detect

    # A regular file can be looked at, then read as it comes: a snapshot or a /proc table is
    # never held whole beside what is made of it.
    head = _head(path)
    body = head.lstrip(b"\xef\xbb\xbf \t\r\n") if head is not None else b""
    # lsof -J/-j output is JSON too, and a paste: it is never taken for a snapshot.
    lsof_json = body.startswith(tuple(mark.encode() for mark in text_detect.LSOF_JSON))
    starts_json = body.startswith(b"{") and not lsof_json
    if input_format == "snapshot" or (
        input_format == "auto" and ((str(path).endswith(".json") and not lsof_json) or starts_json)
    ):
        return snapshot_file.read_snapshots(path, stdin)
    kind = input_format if input_format != "auto" else _text_kind(head)
    if head is not None and kind is not None:
        return _text_file(path, where, kind, strict=strict)
    data, taken_at = _read(path, stdin, input_format)
    content = _decode(data)
    # What is needed of the bytes is taken now, so that they are not held (up to 256 MiB)
    # beside their text while it is parsed.
    binary = _binary_note(data, content)
    del data
    if input_format == "auto" and text_detect.detect(content) == text_detect.SNAPSHOT:
        return snapshot_file.snapshots_from_json(content, where)
    try:
        return text.read_text(
            content, where, input_format=input_format, strict=strict, taken_at=taken_at
        )
    except InputError as error:
        if error.line is None and binary:  # say why nothing was found
            raise InputError(where, f"{error.problem}; {binary}") from None
        raise


def _head(path: Path | str) -> bytes | None:
    """The first bytes of a regular file that holds some; None for anything else (a pipe's
    first bytes cannot be looked at and read again), or where the ordinary reading will say
    what is wrong."""
    if str(path) == "-" or not Path(path).is_file():
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(reading.HEAD)
    except OSError:
        return None
    return head if head.strip() and not _utf16(head) else None


def _text_kind(head: bytes | None) -> str | None:
    """What a text file is, as ``text.read_text`` would tell from its first line (``proc`` or
    ``text``); None where that line does not end within ``head``."""
    from tcphealth.sources.text import detect as text_detect

    if head is None:
        return None
    text = head.decode("utf-8", errors="replace")
    if "\n" not in text.lstrip("\ufeff \t\r\n"):
        return None
    return "proc" if text_detect.detect(text) == text_detect.PROC else "text"


def _text_file(path: Path | str, where: str, kind: str, *, strict: bool) -> list[Snapshot]:
    """A paste or a /proc table copy in a regular file, read line by line as the file is read:
    at the 256 MiB limit, neither its bytes nor its text nor a list of its lines is ever held
    whole. ``kind`` is ``proc`` or a paste format (``text``: any)."""
    from tcphealth.sources import text
    from tcphealth.sources.text.lines import lines_of

    taken_at = os.stat(path).st_mtime
    counted = _CountedText(reading.iter_input(path, None, TEXT_LIMIT))
    try:
        return text.read_lines(
            lines_of(counted), where, input_format=kind, strict=strict, taken_at=taken_at
        )
    except InputError as error:
        if error.line is not None:
            raise
        try:
            for _ in counted:  # the rest is counted too
                pass
        except InputError:
            raise error from None
        binary = _binary_note_of(counted.nuls, counted.replaced - counted.real)
        if binary:  # say why nothing was found
            raise InputError(where, f"{error.problem}; {binary}") from None
        raise


class _CountedText:
    """The text of UTF-8 chunks, as ``_decode`` makes it of the whole, counting what
    :func:`_binary_note` needs: NUL bytes, and sequences that are not UTF-8."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.nuls = 0
        self.replaced = 0  # U+FFFD in the text
        self.real = 0  # of those, the ones the input held (EF BF BD)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = b""  # the last bytes of the previous chunk, for an EF BF BD across two

    def __iter__(self) -> Iterator[str]:
        for chunk in self.chunks:
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


def _where(path: Path | str) -> str:
    return reading.where_of(path)


def _read(path: Path | str, stdin: IO[str] | None, input_format: str) -> tuple[bytes, float]:
    """The bytes, and the time to give their snapshots: the file's modification time (the
    capture is no later than that), or now for standard input. What looks like a JSON
    snapshot may be as large as a snapshot file; anything else is held to the text limit."""

    from tcphealth.sources import snapshot_file

    def limit(head: bytes) -> reading.Limit:
        if input_format == "auto" and head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
            return snapshot_file.SNAPSHOT_LIMIT
        return TEXT_LIMIT

    read = reading.read_input(path, stdin, limit)
    return read.data, read.taken_at


def _utf16(data: bytes) -> bool:
    # Windows PowerShell's `netstat > file` writes UTF-16.
    return b"\0" in data[:4096] and data[:2] in (b"\xff\xfe", b"\xfe\xff")


def _decode(data: bytes) -> str:
    if _utf16(data):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8", errors="replace")


def _binary_note(data: bytes, content: str) -> str | None:
    """``it holds binary data (12 NUL bytes), not text`` for input that is not text at all.
    ``content`` is ``data`` as :func:`_decode` made it."""
    if _utf16(data):
        return None  # its NULs are half of every character
    # Each sequence that is not UTF-8 became one U+FFFD in ``content``; the U+FFFD the input
    # itself held are the encoded ones (EF BF BD). Counted, not decoded again: no copies.
    undecodable = content.count("\ufffd") - data.count(b"\xef\xbf\xbd")
    return _binary_note_of(data.count(b"\0"), undecodable)


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
