"""Sources turn something -- the live host, a saved file -- into a :class:`Snapshot`.

Each source is a peer module; this package only chooses between them, so the CLI never needs
to know how a snapshot was made.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from tcphealth.errors import SourceUnavailableError
from tcphealth.model import Snapshot
from tcphealth.sources import procfs, psutil_source, snapshot_file

LIVE_SOURCES = ("auto", "procfs", "psutil")


def collect_live(
    source: str = "auto", proc_root: Path = Path("/proc"), *, with_processes: bool = True
) -> Snapshot:
    """Look at this host now. ``auto`` reads /proc where it exists, else asks psutil."""
    if source not in LIVE_SOURCES:
        raise ValueError(f"unknown source {source!r}")
    if source == "auto":
        source = "procfs" if (proc_root / "net" / "tcp").exists() else "psutil"
    if source == "procfs":
        if not (proc_root / "net" / "tcp").exists():
            raise SourceUnavailableError(f"{proc_root}/net/tcp does not exist on this host")
        return procfs.collect(proc_root, with_processes=with_processes)
    return psutil_source.collect(with_processes=with_processes)


def load(path: Path | str, stdin: IO[str] | None = None) -> Snapshot:
    """Read a saved snapshot file (``-`` for standard input)."""
    return snapshot_file.read_snapshot(path, stdin)
