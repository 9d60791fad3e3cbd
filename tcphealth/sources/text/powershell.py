"""PowerShell's ``Get-NetTCPConnection`` (Windows 8 / Server 2012 and later), in the two shapes
incident threads show: its default table, and the counts of ``Group-Object``.

The table (addresses left-aligned, ports right after them; AppliedSetting only on connected
rows; a window too narrow for OwningProcess wraps or drops it; a long IPv6 address is cut to
``2a01:cb19:18c:c700:ec96:8a3e:723...``), its blanks narrowed here::

    LocalAddress    LocalPort RemoteAddress     RemotePort State       AppliedSetting OwningProcess
    ------------    --------- -------------     ---------- -----       -------------- -------------
    0.0.0.0         55113     0.0.0.0           0          Bound                      20756
    172.16.0.10     55113     47.106.194.220    443        Established Internet       20756

Grouped by state and owner, the sockets are not listed, only counted (``Name`` is the group's
key: ``State, OwningProcess``, or ``State`` alone; a column cut short ends in ``...``)::

    Count Name               ProcessName
    ----- ----               -----------
    51382 Bound, 44688       node
       46 TimeWait, 0        Idle

States are written in PascalCase (``TimeWait``, ``SynReceived``). ``Bound`` is a socket bound to
a local port that neither listens nor connects, the kernel's BOUND_INACTIVE; ``DeleteTCB`` is a
connection whose control block is being freed, read as CLOSE. PID 0 is the idle process, shown
for TIME_WAIT: nobody holds those. Windows shows no queues, timers, uids or inodes: all unknown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tcphealth.model import IPAddress, TcpState
from tcphealth.sources.text.lines import (
    Holder,
    Row,
    RowError,
    endpoints,
    parse_count,
    read_host,
    read_port,
    recover_cut_address,
)
from tcphealth.sources.text.parser import Context, RowParser

STATES: dict[str, TcpState] = {
    "Closed": TcpState.CLOSE,
    "Listen": TcpState.LISTEN,
    "SynSent": TcpState.SYN_SENT,
    "SynReceived": TcpState.SYN_RECV,
    "Established": TcpState.ESTABLISHED,
    "FinWait1": TcpState.FIN_WAIT1,
    "FinWait2": TcpState.FIN_WAIT2,
    "CloseWait": TcpState.CLOSE_WAIT,
    "Closing": TcpState.CLOSING,
    "LastAck": TcpState.LAST_ACK,
    "TimeWait": TcpState.TIME_WAIT,
    "DeleteTCB": TcpState.CLOSE,
    "Bound": TcpState.BOUND_INACTIVE,
}
# What the AppliedSetting column may hold (the TCP setting template a connection uses).
_SETTINGS = frozenset(
    {"Internet", "Datacenter", "Compat", "Custom", "InternetCustom", "DatacenterCustom"}
)
CUT = "..."  # PowerShell's mark of a column value cut to fit


def is_header(line: str) -> bool:
    words = line.split()
    return len(words) >= 5 and words[:4] == [
        "LocalAddress",
        "LocalPort",
        "RemoteAddress",
        "RemotePort",
    ]


def _address_like(token: str) -> bool:
    return ("." in token or ":" in token) and not token.endswith(":")


def looks_like_row(tokens: list[str]) -> bool:
    return (
        5 <= len(tokens) <= 7
        and tokens[4] in STATES
        and tokens[1].isdigit()
        and tokens[3].isdigit()
        and _address_like(tokens[0])
        and _address_like(tokens[2])
    )


def _host(text: str) -> tuple[IPAddress | str | None, bool]:
    if text.endswith(CUT):
        return recover_cut_address(text[: -len(CUT)]), True
    return read_host(text), False


def read_row(line: str, context: Context) -> Row:
    tokens = line.split()
    if not looks_like_row(tokens):
        raise RowError("not LocalAddress LocalPort RemoteAddress RemotePort State")
    local_host, local_cut = _host(tokens[0])
    remote_host, remote_cut = _host(tokens[2])
    family, local, remote = endpoints(
        (local_host, read_port(tokens[1])),
        (remote_host, read_port(tokens[3])),
    )
    raw_state = tokens[4]
    row = Row(
        family=family,
        local=local,
        remote=remote,
        state=STATES[raw_state],
        raw_state=raw_state,
        truncated=local_cut or remote_cut,
    )
    rest = tokens[5:]
    if rest and rest[0] in _SETTINGS:
        rest = rest[1:]
    header = context.header
    owners = header is None or "OwningPr" in header  # a narrow window drops the column
    if len(rest) > 1 or (rest and not owners):
        raise RowError(f"{len(tokens)} columns: {' '.join(rest)!r} is no owning process")
    if owners and rest:
        pid = parse_count(rest[0], "OwningProcess")
        row.holders = [] if pid == 0 else [Holder(pid)]
    return row


# --- Group-Object counts -----------------------------------------------------------------------

_GROUPED = re.compile(
    r"^\s*(?P<count>\d{1,12})\s+(?P<state>[A-Z][A-Za-z0-9]{3,11})"
    r"(?:,\s*(?P<pid>\d{1,10}))?(?:\s+(?P<name>\S.*?))?\s*$",
    re.ASCII,
)


@dataclass(frozen=True, slots=True)
class Grouped:
    """One line of ``Get-NetTCPConnection | Group-Object State[, OwningProcess]``."""

    state: TcpState
    raw_state: str
    count: int
    pid: int | None  # None: grouped by state alone
    name: str | None  # the ProcessName column, where the command added one


def match_grouped(line: str) -> Grouped | None:
    """A ``Group-Object`` count of Get-NetTCPConnection: ``51382 Bound, 44688  node``."""
    match = _GROUPED.match(line)
    if match is None or match.group("state") not in STATES:
        return None
    name = match.group("name")
    pid = match.group("pid")
    if pid is None and name is not None and not name.startswith("{"):
        return None  # "12 Listen something": not Group-Object's key and group
    if name is not None and (name.startswith("{") or pid is None):
        name = None  # the Group column lists the objects, not a process name
    return Grouped(
        state=STATES[match.group("state")],
        raw_state=match.group("state"),
        count=int(match.group("count")),
        pid=int(pid) if pid is not None else None,
        name=name,
    )


PARSER = RowParser(is_header=is_header, looks_like_row=looks_like_row, read_row=read_row)
