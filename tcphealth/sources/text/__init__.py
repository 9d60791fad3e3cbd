"""Text someone pasted into a ticket, read into snapshots: ``ss`` and Linux ``netstat`` output,
macOS and Windows ``netstat``, a copy of /proc/net/tcp{,6}.

Each paste format is a line in :mod:`.registry` (its name, what it carries, its place in the
order the reader tries formats) and a small module that recognises and reads its rows, over the
shared line helpers in :mod:`.lines`; :mod:`.paste` walks a paste that may mix them with
prompts, summaries and prose. A /proc copy is read by :mod:`.proc_copy`, and :mod:`.detect`
tells a snapshot file, a /proc copy and a paste apart.

Only the registry is imported with this package (the command line lists its formats); the
readers when text is read.

What a format does not show is unknown (``None``), never 0.
"""

from __future__ import annotations

from collections.abc import Iterable

from tcphealth.errors import InputError
from tcphealth.model import Attribution, HostInfo, Snapshot
from tcphealth.sources import procfs
from tcphealth.sources.text import registry

# The input formats that are pastes, each with the formats it allows: the registry's
# --input-format choices, and ``text`` (what ``auto`` reads a paste as) for any of them.
TEXT_INPUT_FORMATS: dict[str, frozenset[str]] = {
    **registry.CHOICES,
    "text": frozenset(registry.NAMES),
}


def read_text(
    text: str,
    where: str,
    *,
    input_format: str = "auto",
    strict: bool = False,
    taken_at: float = 0.0,
) -> list[Snapshot]:
    """Every capture in ``text`` (oldest first) as a snapshot. ``input_format`` is ``auto``,
    ``proc`` or one of :data:`TEXT_INPUT_FORMATS`. Raises :class:`InputError` when nothing in
    the text is a TCP table of the format, or (``strict``) a row cannot be read."""
    from tcphealth.sources.text import detect as detect_module
    from tcphealth.sources.text import proc_copy
    from tcphealth.sources.text.lines import iter_lines

    if input_format == "auto":
        kind = detect_module.detect(text)
        if kind == detect_module.SNAPSHOT:
            raise InputError(where, "a JSON snapshot, not text")  # the caller handles these
        input_format = proc_copy.NAME if kind == detect_module.PROC else "text"
    # Line by line: a list of every line beside the text would double it.
    return read_lines(
        iter_lines(text), where, input_format=input_format, strict=strict, taken_at=taken_at
    )


def read_lines(
    lines: Iterable[str],
    where: str,
    *,
    input_format: str,
    strict: bool = False,
    taken_at: float = 0.0,
) -> list[Snapshot]:
    """:func:`read_text` of text given line by line (a file read as it comes, never whole),
    whose format is known: ``proc`` or one of :data:`TEXT_INPUT_FORMATS`."""
    from tcphealth.sources.text import paste, proc_copy

    if input_format == proc_copy.NAME:
        return _proc_snapshots(lines, where, strict=strict, taken_at=taken_at)
    formats = TEXT_INPUT_FORMATS.get(input_format)
    if formats is None:
        raise ValueError(f"unknown input format {input_format!r}")
    return paste.read_paste(lines, where, formats=formats, strict=strict, taken_at=taken_at)


def _proc_snapshots(
    lines: Iterable[str], where: str, *, strict: bool, taken_at: float
) -> list[Snapshot]:
    from tcphealth.sources.text import proc_copy

    captures = proc_copy.parse(lines, where, strict=strict)
    skipped = sorted(item for capture in captures for item in capture.skipped)
    if skipped and not any(capture.sockets for capture in captures):
        # Rows, and not one readable: a broken file, not a host without sockets.
        number, reason = skipped[0]
        raise InputError(where, procfs.no_row_readable(len(skipped), reason), line=number)
    snapshots = []
    for capture in captures:
        notes = list(capture.notes)
        notes.extend(
            f"{where}:{number}: line skipped: {reason}" for number, reason in capture.skipped
        )
        snapshots.append(
            Snapshot(
                host=HostInfo(
                    hostname=None,
                    kernel=None,
                    taken_at=taken_at,
                    source=f"proc:{where}",
                    privileged=None,
                    platform="linux",
                    # The file's time is not when /proc was copied: the capture time is unknown.
                    taken_at_known=False,
                ),
                attribution=Attribution(attempted=False),
                sockets=tuple(capture.sockets),
                notes=tuple(notes),
                skipped_lines=len(capture.skipped),
            )
        )
    return snapshots
