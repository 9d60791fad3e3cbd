"""The paste formats, in the one order the paste reader tries them.

Each format is one :class:`PasteFormat` line here and one module under
:mod:`tcphealth.sources.text` that gives a :class:`~.parser.RowParser` as ``PARSER``. The
``--input-format`` choices, their help, the format lists of :mod:`.paste` and of
:func:`tcphealth.sources.load` all come from :data:`FORMATS`; nothing else names a format.
Adding one is a module and a line below.

This module imports no parser, so the command line can list the formats without paying for
reading code a live run never uses; :func:`parser` loads a format's module on first use.

**The order.** A line is offered to the formats in this order, twice: first each judges the
row by its own shape, then each may claim it by its context (a header or command above it).
A row that says what it is thus never yields to a guess from context. Within a pass the first
format to claim a line wins, and the same order decides which header a line is. The
shapes below are disjoint (a test holds them to it, on every row of the fixtures), so today
the order only sets speed -- the most pasted format is tried first -- and a format added with
a looser shape goes after those it could be mistaken for, saying why in its ``place``.
"""

from __future__ import annotations

import enum
import functools
import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tcphealth.sources.text.parser import RowParser


class Carries(enum.StrEnum):
    """What a format's rows can show besides state and endpoints. Where a format does not
    carry something, every row has it unknown."""

    QUEUES = "queues"  # Recv-Q and Send-Q of a connection
    ACCEPT_QUEUES = "accept queues"  # a listener's accept queue (Recv-Q)
    BACKLOGS = "backlogs"  # a listener's maximum backlog (ss's Send-Q)
    OWNERS = "owners"  # the processes holding the socket
    TIMERS = "timers"  # the pending timer, retransmits and probes
    UIDS = "uids"
    INODES = "inodes"
    COOKIES = "cookies"  # the kernel's socket cookie (ss -e sk:)
    TCP_INFO = "tcp_info"  # ss -i details


@dataclass(frozen=True, slots=True)
class PasteFormat:
    """What is known about a paste format without reading any of it."""

    name: str  # as --input-format and a snapshot's source name it
    tool: str  # the command that prints it; formats of one tool share a choice named after it
    platform: str | None  # the HostInfo platform its rows come from; None: any
    help: str  # a few words for --input-format's help
    module: str  # the module under tcphealth.sources.text whose PARSER reads it
    carries: frozenset[Carries]
    place: str  # why it stands where it does in FORMATS
    # The flag (of ``tool``) with which every row shows its holders, so that a row naming
    # none is held by nobody the tool could see (given the flag, not only when a row has one).
    owners_flag: str | None = None
    # The flag with which the tool shows a timer only while one runs: a row without one has
    # none pending (also when any row of the table shows one).
    sparse_timers_flag: str | None = None
    # Whether per-state counts printed under ``tool``'s command are named after this format.
    names_tool_summaries: bool = False
    # Whether its tables are a view of their own (lsof: the descriptors of the processes it
    # was asked about), never one capture with another tool's look at the host's sockets.
    own_view: bool = False


FORMATS: tuple[PasteFormat, ...] = (
    PasteFormat(
        name="ss",
        tool="ss",
        platform="linux",
        help="ss (iproute2)",
        module="ss",
        carries=frozenset(Carries),
        place="first: the most pasted format; its shape (a state word or an ss netid first) "
        "is no other format's. Its rows without a State column are claimed by context only.",
        owners_flag="p",
        sparse_timers_flag="o",
        names_tool_summaries=True,
    ),
    PasteFormat(
        name="netstat-linux",
        tool="netstat",
        platform="linux",
        help="Linux netstat (net-tools)",
        module="netstat_linux",
        carries=frozenset(
            {
                Carries.QUEUES,
                Carries.ACCEPT_QUEUES,
                Carries.OWNERS,
                Carries.TIMERS,
                Carries.UIDS,
                Carries.INODES,
            }
        ),
        place="any order among the netstats: its rows start with tcp/tcp6 and put the port "
        "after a colon; macOS's put it after a dot, Windows' start with TCP.",
        owners_flag="p",
        names_tool_summaries=True,
    ),
    PasteFormat(
        name="netstat-macos",
        tool="netstat",
        platform="darwin",
        help="macOS and BSD netstat (-v: with pids)",
        module="netstat_macos",
        # -L's listener table gives a listener's accept queue and backlog (qlen, maxqlen)
        carries=frozenset(
            {Carries.QUEUES, Carries.ACCEPT_QUEUES, Carries.BACKLOGS, Carries.OWNERS}
        ),
        place="any order among the netstats: tcp4/tcp6/tcp46 and a port after a dot are its own.",
    ),
    PasteFormat(
        name="netstat-windows",
        tool="netstat",
        platform="windows",
        help="Windows netstat",
        module="netstat_windows",
        carries=frozenset({Carries.OWNERS}),
        place="any order among the netstats: an upper-case TCP/TCPv6 first is its own.",
    ),
    PasteFormat(
        name="powershell",
        tool="Get-NetTCPConnection",
        platform="windows",
        help="PowerShell Get-NetTCPConnection (its table; Group-Object counts are read too)",
        module="powershell",
        carries=frozenset({Carries.OWNERS}),
        place="after the netstats: its rows start with an address and put a PascalCase state "
        "fifth (Established, TimeWait), which no other format's rows do.",
    ),
    PasteFormat(
        name="lsof",
        tool="lsof",
        platform=None,
        help="lsof -i (any platform), and lsof -J/-j JSON (4.99.7+)",
        module="lsof",
        # The queues, uid and inode come from -J/-j (tcp_info, uid, a Linux socket's device).
        carries=frozenset(
            {
                Carries.OWNERS,
                Carries.QUEUES,
                Carries.ACCEPT_QUEUES,
                Carries.UIDS,
                Carries.INODES,
            }
        ),
        place="last: its rows (COMMAND PID ... IPv4/IPv6 ... TCP NAME (STATE), or a JSON "
        'object opening with {"pid":) are no other format\'s, and the least pasted of them.',
        own_view=True,
    ),
)

NAMES: tuple[str, ...] = tuple(fmt.name for fmt in FORMATS)
BY_NAME: dict[str, PasteFormat] = {fmt.name: fmt for fmt in FORMATS}


def _choices() -> dict[str, frozenset[str]]:
    """The --input-format choices that are paste formats, each with the formats it allows: a
    tool printing several formats gives a choice for any of them (``netstat``), listed before
    them."""
    choices: dict[str, frozenset[str]] = {}
    for fmt in FORMATS:
        members = frozenset(other.name for other in FORMATS if other.tool == fmt.tool)
        if len(members) > 1 and fmt.tool not in choices:
            choices[fmt.tool] = members
        choices[fmt.name] = frozenset({fmt.name})
    return choices


CHOICES: dict[str, frozenset[str]] = _choices()


def choices_help() -> str:
    """``ss: ss (iproute2); netstat: any netstat; netstat-linux: …`` for --input-format."""
    parts = []
    for choice in CHOICES:
        if choice in BY_NAME:
            parts.append(f"{choice}: {BY_NAME[choice].help}")
        else:
            parts.append(f"{choice}: any {choice}")
    return "; ".join(parts)


def summary_format(tool: str | None) -> str | None:
    """The format a section of per-state counts printed by ``tool`` is named after."""
    for fmt in FORMATS:
        if fmt.tool == tool and fmt.names_tool_summaries:
            return fmt.name
    return None


@functools.cache
def parser(name: str) -> RowParser:
    """The code that reads format ``name``, imported on first use."""
    from tcphealth.sources.text.parser import RowParser

    module = importlib.import_module(f"tcphealth.sources.text.{BY_NAME[name].module}")
    found = getattr(module, "PARSER", None)
    if not isinstance(found, RowParser):
        raise TypeError(f"{module.__name__} gives no RowParser as PARSER")
    return found
