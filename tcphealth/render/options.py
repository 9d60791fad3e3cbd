"""What to render, independent of the format: which view, and how much of it."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class View(enum.StrEnum):
    REPORT = "report"  # `tcphealth`: findings, then the sockets per process
    SOCKETS = "sockets"  # `tcphealth sockets`: one row per socket
    CHECK = "check"  # `tcphealth check`: the findings only
    BRIEF = "brief"  # `tcphealth --brief`: the verdict only, one line per finding


# How many sockets a table shows unless --limit says otherwise; other formats show them all.
TABLE_SOCKET_LIMIT = 200
# How many groups (rows) a per-process table shows unless --all.
TABLE_GROUP_LIMIT = 10


@dataclass(frozen=True)
class RenderOptions:
    view: View = View.REPORT
    show_all: bool = False  # --all: every process and every row, in the table
    with_sockets: bool = False  # --sockets: add every socket to the report
    limit: int | None = None  # --limit: at most this many sockets (0: all); None: the default

    def socket_limit(self, table: bool) -> int | None:
        """How many sockets to show: ``None`` for all."""
        if self.limit is not None:
            return self.limit or None
        return TABLE_SOCKET_LIMIT if table else None
