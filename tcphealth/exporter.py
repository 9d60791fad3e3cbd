"""Metrics of a host for Prometheus, callable without the command line: the report of a
snapshot (or a series) turned into metric families, and the textfile node_exporter reads.

The HTTP side (``tcphealth serve``) is :mod:`tcphealth.serve`; the names and labels are
:mod:`tcphealth.render.prometheus`.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from tcphealth.diagnose.config import Thresholds
from tcphealth.filters import SocketFilter
from tcphealth.model import Snapshot
from tcphealth.pipeline import analyse_table, diagnose_samples
from tcphealth.render.prometheus import DEFAULT_TOP, KernelFacts, families, table_families

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    from tcphealth.columnar import SocketTable


def report_families(
    series: Sequence[Snapshot],
    where: str = "-",
    *,
    flt: SocketFilter | None = None,
    thresholds: Thresholds | None = None,
    top: int = DEFAULT_TOP,
) -> list[Metric]:
    """The metric families of one snapshot, or of the latest of a timed series (diagnosed
    with time, as ``tcphealth --from SERIES`` does); ``where`` names the input in notes."""
    # No metric reads the groups of sockets a report makes for each process's table.
    diagnosed = diagnose_samples(series, where, flt, thresholds, grouped=False)
    latest = diagnosed.noted  # the snapshot the report is of: its counters and sysctls
    return families(diagnosed.report, KernelFacts(latest.counters, latest.sysctls), top=top)


def table_families_of(
    snapshot: Snapshot,
    table: SocketTable,
    *,
    lazy: Sequence[int] = (),
    thresholds: Thresholds | None = None,
    top: int = DEFAULT_TOP,
) -> list[Metric]:
    """:func:`report_families` of one live snapshot given as a table (every socket as columns,
    the snapshot listing as objects those in states not in ``lazy``): the same families,
    counted over the columns (tests/test_lean_pipeline.py compares them)."""
    report = analyse_table(snapshot, table, thresholds, lazy)
    return table_families(report, table, KernelFacts(snapshot.counters, snapshot.sysctls), top=top)


def write_textfile(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as node_exporter's textfile collector needs it: a temporary
    file in the same directory (named ``.NAME.*.tmp``, which the collector ignores) renamed
    over ``path``, so a scrape never reads half a file. The file is readable by others as
    the umask allows (node_exporter seldom runs as the user that writes it)."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, _default_file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename makes it the file
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _default_file_mode() -> int:
    """0o666 less the umask: what open() would have given (mkstemp gives 0o600)."""
    mask = os.umask(0)
    os.umask(mask)
    return (stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH) & ~mask
