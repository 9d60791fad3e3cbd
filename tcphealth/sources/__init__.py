"""Sources turn something -- the live host, a saved file -- into a :class:`Snapshot`.

Each source is a peer module; this package only chooses between them, so the CLI never needs
to know how a snapshot was made.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import IO

from tcphealth.errors import SourceUnavailableError
from tcphealth.model import Snapshot
from tcphealth.sources import netlink, procfs, psutil_source, snapshot_file
from tcphealth.sources import netns as netns_module

LIVE_SOURCES = ("auto", "netlink", "procfs", "psutil")


def collect_live(
    source: str = "auto",
    proc_root: Path = Path("/proc"),
    *,
    with_processes: bool = True,
    netns: str | None = None,
) -> Snapshot:
    """Look at this host now, or into the network namespace ``netns`` (a name from
    ``ip netns list`` or a path like /proc/PID/ns/net)."""
    if netns is None:
        return _collect(source, proc_root, with_processes)
    with netns_module.entered(netns):
        snapshot = _collect(source, proc_root, with_processes)
    return dataclasses.replace(
        snapshot,
        host=dataclasses.replace(snapshot.host, source=f"{snapshot.host.source}:netns={netns}"),
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
            source = "netlink"
        else:
            source = "procfs" if has_proc else "psutil"
    if source == "netlink":
        if not netlink.available():
            raise SourceUnavailableError("netlink sock_diag is not available on this host")
        return netlink.collect(proc_root, with_processes=with_processes)
    if source == "procfs":
        if not has_proc:
            raise SourceUnavailableError(f"{proc_root}/net/tcp does not exist on this host")
        return procfs.collect(proc_root, with_processes=with_processes)
    return psutil_source.collect(with_processes=with_processes)


def load(path: Path | str, stdin: IO[str] | None = None) -> Snapshot:
    """Read a saved snapshot file (``-`` for standard input)."""
    return snapshot_file.read_snapshot(path, stdin)
