"""``lsof -i`` output: one line per open descriptor of a network socket.

::

    COMMAND  PID  USER FD  TYPE DEVICE SIZE/OFF NODE NAME
    homed    485 moritz 19u IPv4 0x23e9f3 0t0 TCP fitz.haus:49182->hue.haus:8080 (ESTABLISHED)
    node    4981 james   8u IPv4 825503     0t0 TCP 127.0.0.1:53629->127.0.0.1:3306 (CLOSE_WAIT)
    nginx    911 root    6u IPv6 21402      0t0 TCP *:80 (LISTEN)

Every row names its holder (COMMAND and PID), so a socket two processes share is two rows;
lsof on Linux adds a TID column with ``-K`` or by default on some builds, which is passed over.
Without ``-n``/``-P`` hosts and ports are names (kept as such). lsof shows no queues, timers
or states of sockets nobody holds (TIME_WAIT): those are unknown, not absent.

lsof 4.99.7 added JSON: ``-j`` prints one object per descriptor, ``-J`` one document
``{"lsof_version": …, "processes": [{…, "files": [{…}]}]}`` on one line (src/print.c)::

    {"pid":21762,"pgid":21761,"ppid":21761,"command":"python3","uid":0,"login":"root","fd":"3",
     "access":"u","type":"IPv4","device":"7186908","offset":"0","protocol":"TCP",
     "flags":"RW,CX","tcp_info":{"state":"LISTEN","recv_queue":2,"send_queue":0}}

(one line, wrapped here). It gives the state and queues (``tcp_info``; a listener's
recv_queue is its accept queue, as /proc's), the uid and, on Linux, the socket's inode as
``device``; 4.99.7 prints no ``name`` for sockets, so their addresses are unknown (read where a
later lsof gives them).
"""

from __future__ import annotations

import json
import re

from tcphealth.model import Family, IPAddress, TcpState
from tcphealth.sources.text.lines import (
    Holder,
    NotTcp,
    Row,
    RowError,
    endpoints,
    read_host,
    read_port,
    split_colon_endpoint,
    state_word,
)
from tcphealth.sources.text.parser import Context, RowParser

_TYPES = frozenset({"IPv4", "IPv6"})
_STATE = re.compile(r"\(\s*(?P<state>[A-Z_][A-Z_ ]*[A-Z0-9_])\s*\)\s*$")


def is_header(line: str) -> bool:
    words = line.split()
    return len(words) >= 8 and words[:2] == ["COMMAND", "PID"] and words[-1] == "NAME"


def _tokens(tokens: list[str]) -> list[str]:
    """A row as quoted in a thread (``> java 22664 ...``) is still the row."""
    return tokens[1:] if tokens[:1] == [">"] else tokens


def _proto_index(tokens: list[str]) -> int | None:
    """Where the protocol (TCP/UDP) stands: after a TYPE of IPv4/IPv6 and DEVICE, SIZE/OFF."""
    for index in range(4, min(len(tokens), 10)):
        if tokens[index] in _TYPES and index + 3 < len(tokens):
            for proto in range(index + 2, min(index + 5, len(tokens))):
                if tokens[proto] in ("TCP", "UDP"):
                    return proto
            return None
    return None


def looks_like_row(tokens: list[str]) -> bool:
    if tokens and tokens[0].startswith(_JSON_ROW):
        return True
    tokens = _tokens(tokens)
    if len(tokens) < 8 or not tokens[1].isdigit():
        return False
    proto = _proto_index(tokens)
    return proto is not None and proto + 1 < len(tokens) and ":" in tokens[proto + 1]


def read_row(line: str, context: Context) -> Row:
    if line.lstrip().startswith(_JSON_ROW):
        return parse_json_row(line)
    return parse_row(line)


# --- lsof -J / -j --------------------------------------------------------------------------------

_JSON_ROW = '{"pid":'  # how every -j line starts (the pid is the first field lsof prints)
_JSON_DOCUMENT = '{"lsof_version":'
_UNKNOWN = "?"  # where lsof's JSON names no address


def split_line(line: str) -> list[str] | None:
    """lsof -J's document, one line: a -j line per descriptor (process fields repeated)."""
    stripped = line.strip()
    if not stripped.startswith(_JSON_DOCUMENT):
        return None
    try:
        document = json.loads(stripped)
    except ValueError:
        return None  # cut short in the paste: nothing in it can be trusted
    rows = []
    for process in document.get("processes") or ():
        if not isinstance(process, dict):
            continue
        fields = {key: value for key, value in process.items() if key != "files"}
        if "pid" not in fields:
            continue
        for entry in process.get("files") or ():
            if isinstance(entry, dict):
                rows.append(json.dumps({"pid": fields["pid"], **fields, **entry}))
    return rows


def _json_int(value: object, what: str) -> int | None:
    """A count lsof wrote as a number or as a string of digits (``"device":"7186908"``)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    raise RowError(f"{what} {value!r} is not a number")


def parse_json_row(line: str) -> Row:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as error:
        raise RowError(f"not a whole lsof -j object ({error.msg})") from None
    if not isinstance(entry, dict):
        raise RowError("not an lsof -j object")
    if entry.get("protocol") != "TCP":
        raise NotTcp(str(entry.get("protocol")))
    family = Family.IPV6 if entry.get("type") == "IPv6" else Family.IPV4
    info = entry.get("tcp_info")
    state_text = info.get("state") if isinstance(info, dict) else None
    state = state_word(state_text) if isinstance(state_text, str) else None
    if state is None:
        raise RowError("no tcp_info state (lsof -J/-j with -F but without T?)")
    name = entry.get("name")
    if isinstance(name, str) and name:
        local_text, arrow, remote_text = name.partition("->")
        local_host, local_port = split_colon_endpoint(local_text)
        remote: tuple[IPAddress | str | None, int | None] = (None, None)
        if arrow:
            remote_host, remote_port = split_colon_endpoint(remote_text)
            remote = (read_host(remote_host), read_port(remote_port))
        local = (read_host(local_host), read_port(local_port))
    else:
        local = (_UNKNOWN, None)
        remote = (_UNKNOWN, None) if state is not TcpState.LISTEN else (None, None)
    family, local_end, remote_end = endpoints(local, remote, family)
    pid = _json_int(entry.get("pid"), "pid")
    if pid is None:
        raise RowError("no pid")
    command = entry.get("command")
    assert isinstance(info, dict)
    return Row(
        family=family,
        local=local_end,
        remote=remote_end,
        state=state,
        recv_queue=_json_int(info.get("recv_queue"), "recv_queue"),
        send_queue=_json_int(info.get("send_queue"), "send_queue"),
        uid=_json_int(entry.get("uid"), "uid"),
        # On Linux lsof's DEVICE of a socket is its inode (socket:[N]); elsewhere an address.
        inode=_json_int(entry.get("device"), "device") if entry.get("type") in _TYPES else None,
        holders=[Holder(pid, command if isinstance(command, str) else None)],
        raw_state=state_text,
    )


def parse_row(line: str) -> Row:
    tokens = _tokens(line.split())
    proto = _proto_index(tokens)
    if proto is None or len(tokens) < 2 or not tokens[1].isdigit():
        raise RowError("not an lsof row (COMMAND PID ... IPv4/IPv6 ... TCP NAME)")
    if tokens[proto] != "TCP":
        raise NotTcp(tokens[proto])
    family_type = next(word for word in tokens[4:proto] if word in _TYPES)
    family = Family.IPV6 if family_type == "IPv6" else Family.IPV4
    name = tokens[proto + 1]
    rest = " ".join(tokens[proto + 2 :])
    found = _STATE.search(rest)
    if found is None:
        raise RowError("no (STATE) after the socket's name (was lsof run with -i?)")
    raw_state = found.group("state").replace(" ", "")  # a paste split "(CLOSE _WAIT)"
    state = state_word(raw_state)
    if state is None:
        raise RowError(f"{raw_state!r} is not a TCP state")
    local_text, arrow, remote_text = name.partition("->")
    local_host, local_port = split_colon_endpoint(local_text)
    remote: tuple[IPAddress | str | None, int | None] = (None, None)
    if arrow:
        remote_host, remote_port = split_colon_endpoint(remote_text)
        remote = (read_host(remote_host), read_port(remote_port))
    family, local, peer = endpoints((read_host(local_host), read_port(local_port)), remote, family)
    pid = int(tokens[1])
    return Row(
        family=family,
        local=local,
        remote=peer,
        state=state,
        holders=[Holder(pid, tokens[0])],
        raw_state=found.group("state"),
        platform=_device_platform(tokens[tokens.index(family_type) + 1]),
    )


def _device_platform(device: str) -> str | None:
    """lsof's DEVICE of a socket: its inode (``57747443``) on Linux, the kernel's address of
    the socket (``0x23e9f3``, ``0xfffff80012345678``) on macOS and the BSDs."""
    if device.isascii() and device.isdigit():
        return "linux"
    if re.fullmatch(r"0x[0-9a-fA-F]+", device):
        return "darwin"  # "macOS or BSD": their next steps are the same
    return None


PARSER = RowParser(
    is_header=is_header,
    looks_like_row=looks_like_row,
    read_row=read_row,
    split_line=split_line,
)
