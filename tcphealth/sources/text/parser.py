"""What a paste format's module gives the paste reader: one :class:`RowParser` named ``PARSER``.

The facts about a format that need no parsing (its name, tool, platform, what it carries, its
place in the order) are its line in :mod:`.registry`; this is the code half, loaded only when a
paste is read. Every format reads a row the same way, ``read_row(line, context)``: what a
format needs from around the row (its header, the command that printed it) is in the
:class:`Context`, so the reader never knows which format wants what.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tcphealth.sources.text.lines import Row, TableCommand


@dataclass(frozen=True, slots=True)
class Context:
    """What the paste shows around a row, as the format being asked sees it."""

    # The table header above the row when it is this format's (it says which columns exist).
    header: str | None = None
    # Whether the last header seen was this format's, even where a title line has since
    # ended that header's columns.
    own_table: bool = False
    # The command that printed the table, when a prompt showed it.
    command: TableCommand | None = None


@dataclass(frozen=True, slots=True)
class RowParser:
    """How a format's lines are recognised and read.

    ``looks_like_row`` judges a row by its shape alone (cheap: it runs on every line of a
    paste); ``read_row`` reads it, raising ``RowError`` for a row of the shape that cannot be
    read and ``NotTcp`` for a row of another protocol. ``looks_like_row_in_context`` claims
    rows that only the context makes readable (``ss … state X`` prints no State column); the
    reader asks it only after no format's shape claimed the row."""

    is_header: Callable[[str], bool]
    looks_like_row: Callable[[list[str]], bool]
    read_row: Callable[[str, Context], Row]
    looks_like_row_in_context: Callable[[list[str], Context], bool] | None = None
    # Lines under a row that belong to it (ss -i details, Windows -b owners).
    is_continuation: Callable[[str], bool] | None = None
    read_continuation: Callable[[str, Row], Row] | None = None
    # Titles that start this format's tables, and titles after which rows are not TCP sockets
    # (UNIX-domain and kernel sections), until a table title or header comes.
    titles: tuple[str, ...] = ()
    foreign_titles: tuple[str, ...] = ()
    # Lines the tool prints when it ran without root, so owners it does not show may exist.
    unprivileged_warnings: tuple[str, ...] = ()
    # A line that holds several rows (lsof -J prints its whole document on one line): the rows,
    # each read as a line of its own; None for any other line (cheap: it runs on every line).
    split_line: Callable[[str], list[str] | None] | None = None
