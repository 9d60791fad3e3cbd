"""``ss`` output (iproute2), with any of ``-t -a -n -p -o -e -i -m``, old and new spellings.

A row::

    [Netid] State  Recv-Q Send-Q Local Address:Port Peer Address:Port [extras…]
    LISTEN  129    128    :::30720   :::*   users:(("kube-proxy",pid=1448,fd=21))
    FIN-WAIT-2 0 0 127.0.0.1:39836 127.0.0.1:12345 timer:(timewait,59sec,0) ino:0 sk:3a1

For LISTEN, Recv-Q is the accept-queue length and Send-Q the maximum backlog; for other states
both are bytes. Extras: ``users:((…))`` (``-p``; old ss wrote ``("name",pid,fd)``),
``timer:(on|keepalive|timewait|persist,DURATION,N)`` (``-o``; ss prints it only when a timer
runs), ``uid:`` (only when not 0), ``ino:``, ``sk:`` (the socket cookie, hex) (``-e``).
``-i`` puts tcp_info on a following indented line (``rto:204 rtt:0.05/0.02 lastsnd:1520 …``,
``busy:40ms rwnd_limited:30ms(75.0%)``); ``-m`` adds ``skmem:(r0,rb131072,…,d3)`` there, whose
``d`` is the segments dropped on arrival (kept as the socket's drops; the rest the model does
not keep).

Addresses: ``1.2.3.4:80``, ``[::1]:80`` (new), ``:::22`` and ``::ffff:1.2.3.4:80`` (old),
``*:12345`` (old ss: IPv4 any), ``127.0.0.53%lo:53`` (bound to an interface).
"""

from __future__ import annotations

import re
from dataclasses import replace

from tcphealth.model import TcpInfo, TcpState, TimerKind
from tcphealth.sources.text.lines import (
    Holder,
    NotTcp,
    Row,
    RowError,
    endpoints,
    parse_count,
    parse_ss_duration,
    read_host,
    read_port,
    split_colon_endpoint,
    state_word,
)
from tcphealth.sources.text.parser import Context, RowParser

NETIDS = frozenset(
    {"tcp", "udp", "raw", "u_str", "u_dgr", "u_seq", "nl", "p_raw", "p_dgr", "v_str", "v_dgr",
     "sctp", "mptcp", "tipc", "xdp", "icmp6", "u_seqpacket"}
)  # fmt: skip

_TIMER_KINDS = {
    "on": TimerKind.RETRANSMIT,
    "keepalive": TimerKind.KEEPALIVE,
    "timewait": TimerKind.TIME_WAIT,
    "persist": TimerKind.ZERO_WINDOW_PROBE,
    "unknown": TimerKind.UNKNOWN,
}
_TIMER = re.compile(r"timer:\((?P<name>[a-z]+),(?P<when>[^,)]*),(?P<count>\d+)\)")
_USERS = re.compile(r'users:\((?P<body>(?:\("(?:[^"\\]|\\.)*"[^()]*\),?)*)\)')
_USER = re.compile(r'\("(?P<name>(?:[^"\\]|\\.)*)",(?:pid=)?(?P<pid>\d+),(?:fd=)?(?P<fd>\d+)\)')
_KEYED = re.compile(r"(?:^|\s)(?P<key>uid|ino|sk|cookie):(?P<value>[0-9A-Fa-fx]+)(?=\s|$)")


def is_header(line: str) -> bool:
    words = line.split()
    return "Recv-Q" in words and "Send-Q" in words and "Address:Port" in line


def header_has_state(line: str) -> bool:
    return "State" in line.split()


def header_has_peer(line: str) -> bool:
    """ss always prints both endpoints; a header that names no Peer column is a table whose
    last column the reporter cut off (``State Recv-Q Send-Q Local Address:Port``)."""
    return "Peer" in line.split()


def looks_like_row(tokens: list[str]) -> bool:
    """Shape only: ``[netid] STATE n n …`` or, without a State column, ``n n addr addr``."""
    if len(tokens) < 2:
        return False
    first = tokens[0]
    if first in NETIDS and len(tokens) > 1:
        return state_word(tokens[1]) is not None or tokens[1] in ("UNCONN", "ESTAB")
    if state_word(first) is None:
        return False
    # "ESTAB 0 0 a:p b:p" -- a state then numbers or endpoints, not "LISTEN to this"
    return any(token.isdigit() or ":" in token for token in tokens[1:4])


def looks_like_stateless_row(tokens: list[str]) -> bool:
    return (
        len(tokens) >= 4
        and tokens[0].isdigit()
        and tokens[1].isdigit()
        and ":" in tokens[2]
        and ":" in tokens[3]
    )


def looks_like_row_in_context(tokens: list[str], context: Context) -> bool:
    """A row of ``ss … state X`` (no State column), in a table that ss printed."""
    printed_by_ss = context.own_table or (
        context.command is not None and context.command.tool == "ss"
    )
    return printed_by_ss and looks_like_stateless_row(tokens)


def read_row(line: str, context: Context) -> Row:
    header = context.header
    command = context.command
    return parse_row(
        line,
        state_filter=command.state_filter if command is not None else None,
        has_state=header is None or header_has_state(header),
        has_peer=header is None or header_has_peer(header),
    )


def parse_row(
    line: str,
    *,
    state_filter: TcpState | None = None,
    has_state: bool = True,
    has_peer: bool = True,
) -> Row:
    """Parse one ss row. ``has_state=False`` reads a row of ``ss … state X`` (no State
    column), taking the state from ``state_filter``. ``has_peer=False`` reads a row under a
    header without the Peer column: a listener's peer is the wildcard it always is, any other
    socket's peer is unknown."""
    spans = [(m.group(), m.end()) for m in re.finditer(r"\S+", line)]
    tokens = [token for token, _ in spans]
    index = 0
    if tokens and tokens[0] in NETIDS:
        if tokens[0] not in ("tcp", "mptcp"):
            raise NotTcp(tokens[0])
        index = 1
    if has_state and index < len(tokens) and tokens[index][0].isdigit() and state_filter:
        has_state = False  # a paste of `ss state X` under a header we did not see
    if has_state:
        if index >= len(tokens):
            raise RowError("no state column")
        raw = tokens[index]
        state = state_word(raw)
        if state is None:
            raise RowError(f"{raw!r} is not a TCP state")
        if raw == "UNCONN":
            raise NotTcp(raw)
        index += 1
    else:
        if state_filter is None:
            raise RowError("no State column and no `state X` filter to tell the state")
        state = state_filter
    peer_columns = 1 if has_peer else 0
    if len(tokens) < index + 3 + peer_columns:
        wanted = "two endpoints" if has_peer else "the local endpoint"
        raise RowError(f"{len(tokens)} columns, too few for queues and {wanted}")
    first_queue = parse_count(tokens[index], "Recv-Q")
    second_queue = parse_count(tokens[index + 1], "Send-Q")
    local_host, local_port = split_colon_endpoint(tokens[index + 2])
    if has_peer:
        remote_host, remote_port = split_colon_endpoint(tokens[index + 3])
    else:
        remote_host, remote_port = ("*", "*") if state is TcpState.LISTEN else ("?", "?")
    family, local, remote = endpoints(
        (read_host(local_host), read_port(local_port)),
        (read_host(remote_host), read_port(remote_port)),
    )
    rest = line[spans[index + 2 + peer_columns][1] :]
    row = Row(family=family, local=local, remote=remote, state=state)
    if state is TcpState.LISTEN:
        # ss shows a listener's accept queue as Recv-Q and its backlog as Send-Q.
        row.recv_queue, row.listen_backlog = first_queue, second_queue
    else:
        row.recv_queue, row.send_queue = first_queue, second_queue
    _read_extras(row, rest)
    return row


def _read_extras(row: Row, rest: str) -> None:
    users = _USERS.search(rest)
    if users is not None:
        row.holders = []
        for entry in _USER.finditer(users.group("body")):
            pid = int(entry.group("pid"))
            if all(holder.pid != pid for holder in row.holders):
                row.holders.append(Holder(pid, entry.group("name").replace('\\"', '"')))
        if not row.holders:
            raise RowError(f"users:{users.group('body')!r} names no process")
        rest = rest[: users.start()] + rest[users.end() :]
    timer = _TIMER.search(rest)
    if timer is not None:
        kind = _TIMER_KINDS.get(timer.group("name"), TimerKind.UNKNOWN)
        row.timer = kind
        row.timer_seconds = parse_ss_duration(timer.group("when"))
        count = int(timer.group("count"))
        # The third number is icsk_retransmits for the retransmit timer and the unanswered
        # probe count for keepalive and zero-window probes; for TIME_WAIT it is a placeholder.
        if kind is TimerKind.RETRANSMIT:
            row.retransmits = count
        elif kind in (TimerKind.KEEPALIVE, TimerKind.ZERO_WINDOW_PROBE):
            row.probes = count
    elif "timer:(" in rest:
        raise RowError("timer:(…) is not NAME,DURATION,COUNT")
    for match in _KEYED.finditer(rest):
        key, value = match.group("key"), match.group("value")
        try:
            if key == "uid":
                row.uid = int(value)
            elif key == "ino":
                row.inode = int(value)
                row.extended = True
            elif key in ("sk", "cookie"):
                row.cookie = int(value, 16)
                row.extended = True
        except ValueError:
            raise RowError(f"{key}:{value} is not a number") from None
    if row.extended and row.uid is None and row.state is not TcpState.TIME_WAIT:
        row.uid = 0  # ss -e leaves uid: out when it is 0
    if row.state is TcpState.TIME_WAIT:
        row.uid = None  # a placeholder in the kernel's TIME_WAIT mini socket


# tcp_info on the indented line after a row (-i). Times in ms; rto and rtt as ms with decimals.
_INFO = re.compile(r"(?:^|\s)(?P<key>[a-z_]+):(?P<value>[0-9./]+)(?=\s|$)")
# Where a sender's time went, which ss prints in whole ms (the kernel counts us), the limited
# ones with their share of busy: ``busy:1020ms rwnd_limited:990ms(97.1%)``.
_BUSY = re.compile(
    r"(?:^|\s)(?P<key>busy|rwnd_limited|sndbuf_limited):(?P<ms>\d{1,19})ms(?:\([0-9.]+%\))?(?=\s|$)",
    re.ASCII,
)
# -m: skmem:(r0,rb131072,t0,tb16384,f0,w0,o0,bl0,d0); bl and d only from kernels that give them.
_SKMEM = re.compile(r"(?:^|\s)skmem:\((?P<body>[a-z0-9,]*)\)", re.ASCII)


def is_continuation(line: str) -> bool:
    """An indented line of ``-i``/``-m`` details under a row."""
    if not line[:1].isspace():
        return False
    tokens = line.split()
    if not tokens or looks_like_row(tokens):
        return False
    return any(":" in token for token in tokens) or tokens[0] in ("cubic", "bbr", "reno", "ts")


def read_continuation(line: str, row: Row) -> Row:
    skmem = _SKMEM.search(line)
    if skmem is not None:
        for part in skmem.group("body").split(","):
            if part.startswith("d") and part[1:].isdigit():
                row = replace(row, drops=int(part[1:]))
    values: dict[str, str] = {m.group("key"): m.group("value") for m in _INFO.finditer(line)}
    busy = {m.group("key"): int(m.group("ms")) * 1000 for m in _BUSY.finditer(line)}
    if not values and not busy:
        return row

    def whole(key: str) -> int | None:
        text = values.get(key)
        return int(text) if text is not None and text.isdigit() else None

    def micros(key: str) -> int | None:
        text = values.get(key, "").split("/")[0]
        try:
            return round(float(text) * 1000) if text else None
        except ValueError:
            return None

    total = values.get("retrans", "").split("/")
    info = TcpInfo(
        last_data_recv_ms=whole("lastrcv"),
        last_data_sent_ms=whole("lastsnd"),
        last_ack_recv_ms=whole("lastack"),
        backoff=whole("backoff"),
        rto_us=micros("rto"),
        rtt_us=micros("rtt"),
        # retrans:A/B is tcpi_retrans (segments retransmitted and still out) / total: A is not
        # the count of timeouts in a row that TcpInfo.retransmits holds.
        total_retrans=int(total[1]) if len(total) == 2 and total[1].isdigit() else None,
        unacked=whole("unacked"),
        # ss shows a busy sender's limits only where they were hit: with busy shown, a limit
        # not shown is 0 (ss prints it only when nonzero).
        busy_time_us=busy.get("busy"),
        rwnd_limited_us=busy.get("rwnd_limited", 0) if "busy" in busy else None,
        sndbuf_limited_us=busy.get("sndbuf_limited", 0) if "busy" in busy else None,
    )
    if info == TcpInfo():
        return row
    return replace(row, tcp_info=info)


PARSER = RowParser(
    is_header=is_header,
    looks_like_row=looks_like_row,
    read_row=read_row,
    looks_like_row_in_context=looks_like_row_in_context,
    is_continuation=is_continuation,
    read_continuation=read_continuation,
)
