"""Linux ``netstat`` (net-tools) output: ``-tan`` plus any of ``-p``, ``-o``, ``-e``, ``-W``.

::

    Proto Recv-Q Send-Q Local Address   Foreign Address State  User Inode PID/Program name Timer
    tcp        1      0 127.0.0.1:46397 0.0.0.0:*       LISTEN 0   19944 9740/python3 off (0.00/0/0)
    tcp6       0      0 :::22           :::*             LISTEN      -
    tcp        0    356 172.31.4.6:22   172.31.10.66:52562 ESTABLISHED 13091/sshd: deploye

netstat reads /proc/net/tcp, so the queues are the kernel's: for LISTEN, Recv-Q is the
accept-queue length and Send-Q is *not* the backlog (which netstat cannot show). ``-p`` gives
``PID/name`` (the name cut to fit, and it may contain spaces) or ``-`` when no process we could
see holds the socket. ``-o`` gives ``off|on|keepalive|timewait|probe (SECONDS/RETRANS/PROBES)``.
``-e`` adds User (a name, or a uid with ``-n``) and Inode.

Without ``-W`` netstat cuts an address so that ``address:port`` fits 23 characters, keeping the
port: a long IPv6 address loses its tail (``2a01:4f8:110:31e8:33141`` was
``2a01:4f8:110:31e8::2`` port 33141). Such rows are marked truncated.
"""

from __future__ import annotations

import re

from tcphealth.model import Family, TcpState, TimerKind
from tcphealth.sources.text.lines import (
    Holder,
    NotTcp,
    Row,
    RowError,
    endpoints,
    parse_count,
    read_host,
    read_port,
    recover_cut_address,
    split_colon_endpoint,
    state_word,
)
from tcphealth.sources.text.parser import Context, RowParser

PROTOS = frozenset({"tcp", "tcp6", "udp", "udp6", "raw", "raw6", "udpl", "udpl6", "unix"})
_ADDRESS_WIDTH = 23  # net-tools cuts "address:port" to this many characters without -W

_TIMER = re.compile(
    r"\s(?P<name>off|on|keepalive|timewait|probe|unkn-\d+)\s+"
    r"\((?P<seconds>-?[\d.]+)/(?P<retrans>-?\d+)/(?P<probes>-?\d+)\)\s*$"
)
_TIMER_KINDS = {
    "off": TimerKind.NONE,
    "on": TimerKind.RETRANSMIT,
    "keepalive": TimerKind.KEEPALIVE,
    "timewait": TimerKind.TIME_WAIT,
    "probe": TimerKind.ZERO_WINDOW_PROBE,
}
_PROGRAM = re.compile(r"^(?P<pid>\d+)/(?P<name>.*)$")

# Printed by netstat -p when it ran without root.
NOT_ROOT_WARNINGS = (
    "(Not all processes could be identified",
    '(No info could be read for "-p"',
)


class Columns:
    """Which optional columns a header announced (``None``: no header seen, guess per row)."""

    def __init__(self, header: str | None) -> None:
        self.user_inode: bool | None = None
        self.program: bool | None = None
        self.timer: bool | None = None
        if header is not None:
            self.user_inode = "Inode" in header
            self.program = "PID/Program" in header
            self.timer = "Timer" in header


def is_header(line: str) -> bool:
    words = line.split()
    return (
        len(words) >= 6
        and words[0] == "Proto"
        and "Recv-Q" in words
        and "Foreign" in words
        and "State" in words
        and "(state)" not in words
    )


def looks_like_row(tokens: list[str]) -> bool:
    return (
        len(tokens) >= 5
        and tokens[0] in PROTOS
        and tokens[1].isdigit()
        and tokens[2].isdigit()
        and _colon_form(tokens[3])
    )


def _colon_form(token: str) -> bool:
    """``host:port`` where the port is a number, ``*`` or a service name (netstat without -n)."""
    return bool(re.search(r":(\d+|\*|[A-Za-z][\w-]{0,31})$", token))


def read_row(line: str, context: Context) -> Row:
    command = context.command
    wide = command is not None and "W" in command.flags
    return parse_row(line, Columns(context.header), wide=wide)


def parse_row(line: str, columns: Columns, *, wide: bool = False) -> Row:
    """Parse one row. ``columns`` says which optional columns the header had."""
    tokens = line.split()
    if not tokens or tokens[0] not in PROTOS:
        raise RowError("not a netstat row (no tcp/tcp6 in the Proto column)")
    if not tokens[0].startswith("tcp"):
        raise NotTcp(tokens[0])
    if len(tokens) == 5 and state_word(tokens[4]) is not None:
        # A column cut off in the paste: the state stands where the peer was; keep the row
        # with its peer unknown.
        tokens = [*tokens[:4], "?:?", tokens[4]]
    if len(tokens) < 6:
        raise RowError(f"{len(tokens)} columns, at least 6 expected")
    recv_queue = parse_count(tokens[1], "Recv-Q")
    send_queue = parse_count(tokens[2], "Send-Q")
    local_host, local_port_text = split_colon_endpoint(tokens[3])
    remote_host, remote_port_text = split_colon_endpoint(tokens[4])
    local_cut = not wide and len(tokens[3]) >= _ADDRESS_WIDTH and ":" in local_host
    remote_cut = not wide and len(tokens[4]) >= _ADDRESS_WIDTH and ":" in remote_host
    family, local, remote = endpoints(
        (
            recover_cut_address(local_host) if local_cut else read_host(local_host),
            read_port(local_port_text),
        ),
        (
            recover_cut_address(remote_host) if remote_cut else read_host(remote_host),
            read_port(remote_port_text),
        ),
        Family.IPV6 if tokens[0] == "tcp6" else None,
    )
    raw_state = tokens[5]
    state = state_word(raw_state)
    if state is None:
        raise RowError(f"{raw_state!r} is not a TCP state")
    row = Row(
        family=family,
        local=local,
        remote=remote,
        state=state,
        recv_queue=recv_queue,
        send_queue=send_queue,
        truncated=local_cut or remote_cut,
    )
    # From the right: the timer (-o), then PID/Program (-p, may hold spaces), User Inode (-e).
    rest = " " + " ".join(tokens[6:])
    timer = _TIMER.search(rest)
    if timer is not None:
        rest = rest[: timer.start()]
        _read_timer(row, timer)
    elif columns.timer:
        raise RowError("the Timer column is missing or not NAME (SECONDS/RETRANS/PROBES)")
    words = rest.split()
    user_inode = columns.user_inode
    if user_inode is None:  # no header: User and Inode come as "word number" before PID/name
        user_inode = len(words) >= 2 and words[1].isdigit() and _PROGRAM.match(words[0]) is None
    if user_inode:
        if len(words) < 2:
            raise RowError("the User and Inode columns are missing")
        user, inode_text = words[0], words[1]
        row.inode = parse_count(inode_text, "Inode")
        if user.isdigit():
            row.uid = int(user)
        else:
            row.user_name = user
        if state is TcpState.TIME_WAIT:
            row.uid = None  # a placeholder in the kernel's TIME_WAIT mini socket
        words = words[2:]
    program = " ".join(words)
    if program:
        if program == "-":
            row.holders = []
        else:
            match = _PROGRAM.match(program)
            if match is None:
                raise RowError(f"{program!r} is not PID/Program name")
            row.holders = [Holder(int(match.group("pid")), match.group("name") or None)]
    elif columns.program:
        row.holders = []  # an empty PID/Program cell: nobody we could see
    return row


def _read_timer(row: Row, timer: re.Match[str]) -> None:
    name = timer.group("name")
    kind = _TIMER_KINDS.get(name, TimerKind.UNKNOWN)
    row.timer = kind
    try:
        seconds = float(timer.group("seconds"))
    except ValueError:
        raise RowError(f"timer seconds {timer.group('seconds')!r} is not a number") from None
    row.timer_seconds = None if kind is TimerKind.NONE else seconds
    if row.state is not TcpState.TIME_WAIT:
        # Straight from /proc's retrnsmt and timeout columns; TIME_WAIT prints placeholders.
        row.retransmits = int(timer.group("retrans"))
        row.probes = int(timer.group("probes"))


PARSER = RowParser(
    is_header=is_header,
    looks_like_row=looks_like_row,
    read_row=read_row,
    titles=("Active Internet connections",),
    foreign_titles=("Active UNIX domain sockets", "Active Bluetooth connections"),
    unprivileged_warnings=NOT_ROOT_WARNINGS,
)
