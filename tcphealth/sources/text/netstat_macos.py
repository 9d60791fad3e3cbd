"""macOS (BSD) ``netstat -an -p tcp`` and ``netstat -An`` output.

::

    Active Internet connections
    Socket           Flowhash Proto Recv-Q Send-Q  Local Address      Foreign Address    (state)
    7fb03cb94bcb6475 4ca24b6e tcp4      31      0  192.168.1.221.5442 35.236.87.93.8081  CLOSE_WAIT
    7fb03cb946c1cbcd  3c023c0 tcp6       0      0  2600:1700:bab0:d.5 2607:f8b0:4003:c.9 ESTABLISHED

Address and port are joined with a dot; ``*.*`` is the wildcard. netstat prints at most 16
characters of the address, then ``.port``, and cuts the whole to the column's width (without
``-W``): 18 characters with ``-A`` (the Socket and Flowhash columns), 22 without. A field of
that width may have lost the end of its port (``35.235.123.194.555`` is port 5555), and an
IPv6 address of 16 printed characters may itself be cut. Such sockets keep what was printed
and are marked truncated; a 19-character field of a table without ``-A`` is whole.
``tcp46`` is a dual-stack (IPv6) socket.

``-v`` adds columns after the state, named in its header: ``rhiwat shiwat pid epid state
options`` (macOS up to 14), with ``rxbytes txbytes`` in some releases, or ``process:pid``
(``caddy:610``; a name may hold blanks) in the newest. The pid is read from them, where the
header says which column it is or the row has the classic shape (two buffer sizes, the pid,
the effective pid, then ``0x`` state and options). No timers. Recv-Q and Send-Q are
socket-buffer bytes; for a listener they are not its accept queue, so they are unknown.
The UNIX-domain and kernel-control sections that follow are skipped.

``netstat -L`` (FreeBSD, macOS) prints the listeners alone, each with its queue as
qlen/incqlen/maxqlen::

    Current listen queue sizes (qlen/incqlen/maxqlen)
    Proto Listen         Local Address
    tcp4  76/0/50        10.0.0.5.5043

qlen is the accept queue (connections the handshake completed and nobody accepted yet),
incqlen the handshakes still under way, maxqlen the listen backlog: a listener's row with its
accept queue and its backlog, which the table of connections does not give.
"""

from __future__ import annotations

import re

from tcphealth.model import Endpoint, Family, TcpState
from tcphealth.sources.text.lines import (
    Holder,
    NotTcp,
    Row,
    RowError,
    endpoints,
    family_of,
    parse_count,
    read_host,
    read_port,
    recover_cut_address,
    split_dot_endpoint,
    state_word,
    wildcard_for,
)
from tcphealth.sources.text.parser import Context, RowParser

# OpenBSD and NetBSD print plain tcp/udp for IPv4 (Linux does too, but with host:port).
PROTOS = frozenset({"tcp4", "tcp6", "tcp46", "udp4", "udp6", "udp46", "icm4", "icm6", "tcp", "udp"})
_FIELD_WIDTH = 18  # with -A
_WIDE_FIELD_WIDTH = 22  # without -A
_HOST_WIDTH = 16
_PROCESS_PID = re.compile(r"^(?P<name>.*):(?P<pid>\d{1,10})$")
_HEX = re.compile(r"^[0-9a-f]+$")
# netstat -L's queue column: qlen/incqlen/maxqlen (macOS prints qlen/incqlen/maxqlen too).
_LISTEN_QUEUES = re.compile(r"^(\d{1,10})/(\d{1,10})/(\d{1,10})$", re.ASCII)

# Section titles after which rows are not TCP sockets.
FOREIGN_SECTIONS = (
    "Active LOCAL (UNIX) domain sockets",
    "Registered kernel control modules",
    "Active kernel event sockets",
    "Active kernel control sockets",
)


def is_header(line: str) -> bool:
    words = line.split()
    return ("Proto" in words and "Recv-Q" in words and "(state)" in words) or words == [
        "Proto",
        "Listen",
        "Local",
        "Address",
    ]


def _is_listen_queue_row(tokens: list[str]) -> bool:
    """``tcp4  76/0/50  10.0.0.5.5043``: a row of ``netstat -L``."""
    return (
        len(tokens) == 3
        and tokens[0] in PROTOS
        and _LISTEN_QUEUES.match(tokens[1]) is not None
        and re.search(r"\.(\d+|\*)$", tokens[2]) is not None
    )


def looks_like_row(tokens: list[str]) -> bool:
    if _is_listen_queue_row(tokens):
        return True
    index = _proto_index(tokens)
    if index is None or len(tokens) < index + 5:
        return False
    return tokens[index + 1].isdigit() and bool(re.search(r"\.(\d+|\*)$", tokens[index + 3]))


def _proto_index(tokens: list[str]) -> int | None:
    if tokens and tokens[0] in PROTOS:
        return 0
    if (
        len(tokens) > 2
        and tokens[2] in PROTOS
        and _HEX.match(tokens[0]) is not None
        and _HEX.match(tokens[1]) is not None
    ):
        return 2  # -A: Socket and Flowhash columns first
    return None


def read_row(line: str, context: Context) -> Row:
    if _is_listen_queue_row(line.split()):
        return _listen_queue_row(line.split())
    row = parse_row(line)
    tokens = line.split()
    index = _proto_index(tokens)
    assert index is not None  # parse_row checked
    extra = tokens[index + 6 :]
    if extra:
        holder = _holder(extra, context.header)
        if holder is not None:
            row.holders = [] if holder.pid == 0 else [holder]
    return row


def _holder(extra: list[str], header: str | None) -> Holder | None:
    """The pid of -v's columns after the state: by the header's column names where there is
    one, else only from a row of the classic shape."""
    if header is not None and "(state)" in header.split():
        names = header.split()
        names = names[names.index("(state)") + 1 :]
        if "process:pid" in names:
            for number, token in enumerate(extra):
                found = _PROCESS_PID.match(token)
                if found is not None and number >= names.index("process:pid"):
                    start = names.index("process:pid")
                    name = " ".join([*extra[start:number], found.group("name")]).strip()
                    return Holder(int(found.group("pid")), name or None)
            return None
        if "pid" in names and names.index("pid") < len(extra):
            pid = extra[names.index("pid")]
            return Holder(int(pid)) if pid.isascii() and pid.isdigit() and len(pid) <= 10 else None
        return None
    if (
        len(extra) >= 6
        and all(token.isascii() and token.isdigit() for token in extra[:4])
        and extra[4].startswith("0x")
        and extra[5].startswith("0x")
        and len(extra[2]) <= 10
    ):
        return Holder(int(extra[2]))  # rhiwat shiwat pid epid 0xSTATE 0xOPTIONS
    return None


def _listen_queue_row(tokens: list[str]) -> Row:
    """A listener of ``netstat -L``: qlen is its accept queue, maxqlen its backlog."""
    proto, queues, text = tokens
    if not proto.startswith("tcp"):
        raise NotTcp(proto)
    found = _LISTEN_QUEUES.match(queues)
    assert found is not None  # _is_listen_queue_row checked
    accept_queue = parse_count(found.group(1), "qlen")
    backlog = parse_count(found.group(3), "maxqlen")
    family = Family.IPV4 if proto in ("tcp4", "tcp") else Family.IPV6
    host, port_text = split_dot_endpoint(text)
    address = read_host(host)
    port = read_port(port_text)
    if address is None:
        local = Endpoint(wildcard_for(family), port)
    elif isinstance(address, str):  # a host name or a mask: kept, address unknown
        local = endpoints((address, port), (None, None), family)[1]
    elif family_of(address) is not family:
        raise RowError(f"{proto} row with the address {host!r}")
    else:
        local = Endpoint(address, port)
    return Row(
        family=family,
        local=local,
        remote=Endpoint(wildcard_for(family), None),
        state=TcpState.LISTEN,
        recv_queue=accept_queue,
        listen_backlog=backlog,
        truncated=len(text) >= _WIDE_FIELD_WIDTH,
    )


def parse_row(line: str) -> Row:
    tokens = line.split()
    index = _proto_index(tokens)
    if index is None:
        raise RowError("no tcp4/tcp6/tcp46 in the Proto column")
    proto = tokens[index]
    if not proto.startswith("tcp"):
        raise NotTcp(proto)
    if len(tokens) < index + 6:
        raise RowError(f"{len(tokens)} columns, too few for queues, two endpoints and a state")
    recv_queue = parse_count(tokens[index + 1], "Recv-Q")
    send_queue = parse_count(tokens[index + 2], "Send-Q")
    family = Family.IPV4 if proto in ("tcp4", "tcp") else Family.IPV6
    parsed: list[Endpoint] = []
    truncated = False
    width = _FIELD_WIDTH if index == 2 else _WIDE_FIELD_WIDTH
    for text in (tokens[index + 3], tokens[index + 4]):
        host, port_text = split_dot_endpoint(text)
        field_cut = len(text) >= width
        host_cut = family is Family.IPV6 and len(host) >= _HOST_WIDTH
        address = recover_cut_address(host) if host_cut else read_host(host)
        port = read_port(port_text)
        if address is None:
            parsed.append(Endpoint(wildcard_for(family), port))
        elif isinstance(address, str):  # a host name or a mask: kept, address unknown
            parsed.append(endpoints((address, port), (None, None), family)[1])
        elif family_of(address) is not family:
            raise RowError(f"{proto} row with the address {host!r}")
        else:
            parsed.append(Endpoint(address, port))
        truncated = truncated or field_cut or host_cut
    local, remote = parsed
    raw_state = tokens[index + 5]
    state = state_word(raw_state)
    if state is None:
        raise RowError(f"{raw_state!r} is not a TCP state")
    return Row(
        family=family,
        local=local,
        remote=remote,
        state=state,
        recv_queue=None if state is TcpState.LISTEN else recv_queue,
        send_queue=None if state is TcpState.LISTEN else send_queue,
        truncated=truncated,
    )


PARSER = RowParser(
    is_header=is_header,
    looks_like_row=looks_like_row,
    read_row=read_row,
    titles=("Active Internet connections",),
    foreign_titles=FOREIGN_SECTIONS,
)
