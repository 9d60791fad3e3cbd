"""Line-level pieces the text formats share: a parsed row, endpoints in colon, bracket and dot
form, numbers, shell prompts and the commands they ran, and the non-table lines a paste often
carries (sysctl output, ``Max open files``, per-state summaries, ``netstat -s`` counters).

Nothing here knows a whole format; each format module (``ss``, ``netstat_linux``, …) turns one
line into a :class:`Row` and leaves sections, captures and owners to :mod:`.paste`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tcphealth.model import (
    Endpoint,
    Family,
    IPAddress,
    TcpInfo,
    TcpState,
    TimerKind,
    parse_state,
)

ANY_V4 = ipaddress.IPv4Address(0)
ANY_V6 = ipaddress.IPv6Address(0)


def iter_lines(text: str) -> Iterator[str]:
    """The lines of ``text`` exactly as ``text.splitlines()`` gives them, one at a time: a text
    of 256 MiB is not turned into a list of millions of strings beside itself."""
    start = 0
    end = len(text)
    while start < end:
        stop = text.find("\n", start)
        if stop < 0:
            stop = end
        # A piece between two '\n' may still hold the other line breaks splitlines() knows
        # ('\r', '\x0b', '\x0c', '\x1c'-'\x1e', '\x85', '\u2028', '\u2029'); a '\r' just
        # before the '\n' is part of that one break.
        piece = text[start:stop]
        if not piece:
            yield ""
        else:
            yield from piece.splitlines()
            # A piece ending in another break ends its last line there: the '\n' after it
            # ends one more, empty, line.
            if stop < end and piece[-1] != "\r" and piece[-1:].splitlines() == [""]:
                yield ""
        start = stop + 1


def lines_of(pieces: Iterable[str]) -> Iterator[str]:
    """The lines of the text ``pieces`` make together, as ``splitlines()`` of the whole would
    give them, without the whole: each is cut after its last '\n' (a line boundary whatever
    comes next), the rest kept for the next piece."""
    waiting: list[str] = []  # the text since the last '\n'
    for piece in pieces:
        last = piece.rfind("\n")
        if last < 0:
            waiting.append(piece)
            continue
        waiting.append(piece[: last + 1])
        yield from iter_lines("".join(waiting))
        waiting = [piece[last + 1 :]]
    yield from iter_lines("".join(waiting))


class RowError(ValueError):
    """A line that looks like a socket row of the format but cannot be read; the message says
    why. The paste parser skips it with a note (or, strict, refuses the input)."""


class NotTcp(Exception):
    """A row of the format that is not a TCP socket (a UDP or UNIX row): skipped quietly."""


@dataclass(slots=True)  # one a row, held as long as its row
class Holder:
    pid: int
    name: str | None = None


@dataclass(slots=True)  # a paste of millions of rows holds one each until owners are known
class Row:
    """One socket as one line of text printed it, before owners are resolved.

    ``holders`` is ``None`` when the row's format (or its flags) carries no owner column at
    all, ``[]`` when the column is there and names nobody (``-``, no ``users:``, PID 0).
    ``timer`` is ``None`` when the row shows no timer; whether that means "no timer pending"
    or "timers not shown" is decided per section (ss prints ``timer:`` only when one runs).
    """

    family: Family
    local: Endpoint
    remote: Endpoint
    state: TcpState
    send_queue: int | None = None
    recv_queue: int | None = None
    listen_backlog: int | None = None
    timer: TimerKind | None = None
    timer_seconds: float | None = None
    retransmits: int | None = None
    probes: int | None = None
    uid: int | None = None
    user_name: str | None = None
    inode: int | None = None
    cookie: int | None = None
    holders: list[Holder] | None = None
    tcp_info: TcpInfo | None = None
    drops: int | None = None  # ss -m skmem's d: segments dropped on arrival
    truncated: bool = False
    extended: bool = False  # ss -e fields (ino:, sk:) were on the row
    raw_state: str | None = None
    line: int = 0
    # The platform the row's own shape tells it was printed on, where its format runs on
    # several (lsof's DEVICE: a socket's inode in decimal on Linux, a kernel address in hex
    # on macOS and the BSDs); None where it does not tell.
    platform: str | None = None


# --- numbers ------------------------------------------------------------------------------------


def ascii_int(text: str, max_digits: int = 19) -> int | None:
    """A plain decimal number of at most ``max_digits`` ASCII digits, else None (so that
    ``²``, Arabic-Indic digits or a 200,000-digit run never reach ``int()``)."""
    if not text or len(text) > max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def parse_count(text: str, what: str) -> int:
    """A non-negative decimal count such as a queue length; RowError otherwise."""
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise RowError(f"{what} {text!r} is not a number")
    return int(text)


# Addresses and ports a paste repeats (every connection to a listener shares its address and
# port) are made once and shared, by their text. Bounded: a few MiB at most, kept between
# reads (they are only values).
_SHARED_MAX = 1 << 16
_ADDRESSES: dict[str, IPAddress] = {}
_PORTS: dict[str, int] = {}


def parse_port(text: str) -> int | None:
    """``*`` is no port (a wildcard); anything but 0-65535 is an error (a service name such as
    ``ssh`` means the output was not numeric: run the tool with ``-n``)."""
    found = _PORTS.get(text)
    if found is not None:
        return found
    port = _parse_port(text)
    if port is not None and len(_PORTS) < _SHARED_MAX:
        _PORTS[text] = port
    return port


def _parse_port(text: str) -> int | None:
    if text == "*":
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 5 or int(text) > 65535:
        raise RowError(f"port {text!r} is not a number (was the tool run without -n?)")
    return int(text)


# --- addresses ----------------------------------------------------------------------------------


def parse_address(text: str) -> IPAddress | None:
    """An IPv4 or IPv6 address as tools print it; ``None`` for the wildcard ``*``.

    An interface suffix (``127.0.0.53%lo``) is dropped from IPv4; an IPv6 zone (``%14``) is
    kept when Python accepts it. A host name means the tool resolved names: RowError.
    """
    found = _ADDRESSES.get(text)
    if found is not None:
        return found
    address = _parse_address(text)
    if address is not None and len(_ADDRESSES) < _SHARED_MAX:
        _ADDRESSES[text] = address
    return address


def _parse_address(text: str) -> IPAddress | None:
    if text == "*":
        return None
    base, percent, zone = text.partition("%")
    try:
        if ":" in base:
            if percent and zone:
                try:
                    return ipaddress.IPv6Address(f"{base}%{zone}")
                except ValueError:
                    pass
            return ipaddress.IPv6Address(base)
        return ipaddress.IPv4Address(base)
    except ValueError:
        raise RowError(f"address {text!r} is not numeric (was the tool run without -n?)") from None


def recover_cut_address(text: str) -> IPAddress:
    """The best reading of an IPv6 address a tool cut short (``2600:1700:bab0:d``,
    ``fe80::aede:48ff:``): the printed groups, completed with ``::``. The socket is marked
    truncated, so nobody takes the result as the real address."""
    try:
        address = parse_address(text)
    except RowError:
        address = None
    if address is not None:
        return address
    stem = text.split("%")[0].rstrip(":")
    for candidate in (stem, f"{stem}::"):
        try:
            return ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
    raise RowError(f"address {text!r} is cut short beyond recognition")


# Ports by the names /etc/services gives them, as netstat, ss and lsof print them without -n.
# Only names IANA registers for one port: a name not here is kept as an unknown port, never
# guessed.
SERVICES: dict[str, int] = {
    "ftp-data": 20,
    "ftp": 21,
    "ssh": 22,
    "telnet": 23,
    "smtp": 25,
    "domain": 53,
    "http": 80,
    "www": 80,
    "kerberos": 88,
    "pop3": 110,
    "sunrpc": 111,
    "epmap": 135,  # Windows' name for the RPC endpoint mapper (its services file)
    "loc-srv": 135,
    "netbios-ssn": 139,
    "nntp": 119,
    "ntp": 123,
    "imap": 143,
    "imap2": 143,
    "snmp": 161,
    "bgp": 179,
    "ldap": 389,
    "https": 443,
    "microsoft-ds": 445,
    "submission": 587,
    "ipp": 631,
    "ldaps": 636,
    "rsync": 873,
    "imaps": 993,
    "pop3s": 995,
    "nfs": 2049,
    "mysql": 3306,
    "ms-wbt-server": 3389,
    "sip": 5060,
    "xmpp-client": 5222,
    "postgresql": 5432,
    "amqp": 5672,
    "x11": 6000,
    "redis": 6379,
    "http-alt": 8080,
    "webcache": 8080,
    "memcache": 11211,
    "mongodb": 27017,
    # Registered names (IANA's registry, ports 1024-49151) for ports applications commonly
    # listen on. macOS and the RHEL family ship the whole registry as /etc/services, so their
    # lsof, netstat and nc print 8888 as ddi-tcp-1 and 9000 as cslistener; Debian's netbase
    # lists few of them. A list of our own rather than the reading host's /etc/services: the
    # paste was made on another host, and the same paste must read the same everywhere.
    "ncube-lm": 1521,
    "eforward": 2181,
    "hbci": 3000,
    "commplex-main": 5000,
    "sun-sr-https": 6443,
    "irdmi": 8000,
    "vcom-tunnel": 8001,
    "pcsync-https": 8443,
    "ddi-tcp-1": 8888,
    "ddi-tcp-2": 8889,
    "cslistener": 9000,
    "websm": 9090,
    "XmlIpcRegSvc": 9092,
    "hp-pdl-datastr": 9100,
    "wap-wsp": 9200,
}
# A placeholder a reporter typed as a shell or template variable, for an address or a port:
# ``$SERVER``, ``${CLIENT_IP}``, ``%HOST%`` (a Windows variable), ``{ip}``.
_VARIABLE = r"\$\w{1,40}|\$\{\w{1,40}\}|%\w{1,40}%|\{\w{1,40}\}"
_PORT_NAME = re.compile(rf"^(?:[A-Za-z][\w.-]{{0,31}}|<[^<>\s]{{1,40}}>|\?|{_VARIABLE})$", re.ASCII)
# What a paste shows where an address was: a host name (cut short or not), a mask
# (``XX.XX.XX.XX``, ``192.x.x.x``, ``...``), a placeholder (``<server_ip>``, ``$SERVER``).
_HOST_TEXT = re.compile(rf"^(?:\?|[\w.<>*-][\w.<>*:-]{{0,254}}|{_VARIABLE})$", re.ASCII)
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "localhost6"})


def read_port(text: str) -> int | None:
    """A port as a paste shows it: a number, ``*``, a service name (resolved where it is a
    well-known one), or another name or placeholder (``<listen_port>``), which is unknown."""
    if text in SERVICES:
        return SERVICES[text]
    if _PORT_NAME.match(text):
        return None
    return parse_port(text)


def read_host(text: str) -> IPAddress | str | None:
    """An address as a paste shows it: the address, ``None`` for the wildcard, or the text
    itself where it is a name, a mask or a placeholder (the socket is kept; its address is
    unknown)."""
    try:
        return parse_address(text)
    except RowError:
        if _HOST_TEXT.match(text) and not text.isdigit():
            return text
        raise


def wildcard_for(family: Family) -> IPAddress:
    return ANY_V6 if family is Family.IPV6 else ANY_V4


def family_of(address: IPAddress) -> Family:
    return Family.IPV6 if isinstance(address, ipaddress.IPv6Address) else Family.IPV4


_BRACKETED = re.compile(r"^\[(?P<host>[^\]]*)\](?:%(?P<iface>[^:\s]*))?:(?P<port>[^:\s]+)$")


def split_colon_endpoint(text: str) -> tuple[str, str]:
    """``1.2.3.4:80``, ``[::1]:80``, ``[fe80::1]%eth0:546``, ``:::30720``, ``*:*``,
    ``::ffff:10.0.0.1:8080`` -> (host, port) as text. The port follows the last colon unless the
    host is in brackets."""
    if text.startswith("["):
        match = _BRACKETED.match(text)
        if match is None:
            raise RowError(f"endpoint {text!r} is not [address]:port")
        return match.group("host"), match.group("port")
    host, colon, port = text.rpartition(":")
    if not colon or not host:
        raise RowError(f"endpoint {text!r} has no ':port'")
    return host, port


def split_dot_endpoint(text: str) -> tuple[str, str]:
    """The BSD form: ``192.168.1.221.54860``, ``fe80::1.22``, ``*.*`` -> (host, port)."""
    host, dot, port = text.rpartition(".")
    if not dot or not host:
        raise RowError(f"endpoint {text!r} has no '.port'")
    return host, port


def endpoints(
    local: tuple[IPAddress | str | None, int | None],
    remote: tuple[IPAddress | str | None, int | None],
    family_hint: Family | None = None,
) -> tuple[Family, Endpoint, Endpoint]:
    """Build both endpoints; a wildcard address (``*``) takes the family of the other side, or
    IPv4 when both are wildcards (as older ss printed an IPv4 ``INADDR_ANY``). A host that is
    text (a name, a mask: see :func:`read_host`) is kept as the endpoint's ``name``, with the
    family of the other side or of ``family_hint`` (a ``tcp6`` column); ``localhost`` is the
    loopback address."""
    numeric = [
        host for host in (local[0], remote[0]) if host is not None and not isinstance(host, str)
    ]
    family = family_of(numeric[0]) if numeric else family_hint or Family.IPV4
    built = [_endpoint(host, port, family) for host, port in (local, remote)]
    if family_of(built[0].address) is not family_of(built[1].address):
        raise RowError("local and remote addresses are of different families")
    return family, built[0], built[1]


def _endpoint(host: IPAddress | str | None, port: int | None, family: Family) -> Endpoint:
    if host is None:
        return Endpoint(wildcard_for(family), port)
    if isinstance(host, str):
        if host in LOOPBACK_NAMES:
            loopback = ipaddress.IPv6Address(1) if family is Family.IPV6 else LOOPBACK_V4
            return Endpoint(loopback, port)
        return Endpoint(wildcard_for(family), port, name=host)
    key = (host, port)
    found = _ENDPOINTS.get(key)
    if found is None:
        found = Endpoint(host, port)
        if len(_ENDPOINTS) < _SHARED_MAX:
            _ENDPOINTS[key] = found
    return found


_ENDPOINTS: dict[tuple[IPAddress, int | None], Endpoint] = {}


LOOPBACK_V4 = ipaddress.IPv4Address("127.0.0.1")


# --- states -------------------------------------------------------------------------------------


def state_word(token: str) -> TcpState | None:
    """A state as tools print it: upper case, in any tool's spelling. Lower or mixed case is
    prose ("Listen", "established"), not a table cell."""
    if not token or token != token.upper() or not token[0].isalpha():
        return None
    return parse_state(token)


# --- timers -------------------------------------------------------------------------------------

_SS_MS_TIMER = re.compile(
    r"^(?:(?P<min>\d{1,9})min)?(?:(?P<sec>\d{1,9})(?P<sep>sec|\.))?"
    r"(?:(?P<ms>\d{1,9})(?P<unit>ms|sec))?$",
    re.ASCII,
)


def parse_ss_duration(text: str) -> float:
    """ss's timer text in seconds. ss prints minutes, then seconds, then milliseconds, dropping
    the smaller units once the larger are big: ``59sec``, ``1min2sec``, ``10min``, ``052ms``
    (zero-padded), ``1.076ms`` (1 s and 076 ms), ``5.200ms``; an empty text is 0.

    Seconds with milliseconds end in ``ms`` up to iproute2 6.10 and in ``sec`` from 6.11 on
    (iproute2 commit 3e807112, "ss: fix expired time format of timer", July 2024): ``9.501sec``
    is 9 s and 501 ms, as ``9.501ms`` was before; milliseconds alone stay ``476ms``."""
    match = _SS_MS_TIMER.match(text)
    if match is None:
        raise RowError(f"timer duration {text!r} is not in ss's form")
    minutes = int(match.group("min") or 0)
    seconds = int(match.group("sec") or 0)
    millis = int(match.group("ms") or 0)
    dotted = match.group("sep") == "."
    if (dotted and match.group("ms") is None) or (
        # "9sec501sec": only milliseconds after a dot end in sec
        match.group("unit") == "sec" and not dotted
    ):
        raise RowError(f"timer duration {text!r} is not in ss's form")
    return minutes * 60 + seconds + millis / 1000


# --- prompts and commands ---------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """A shell prompt line: who ran what, where."""

    command: str
    user: str | None = None
    host: str | None = None
    cwd: str | None = None
    sigil: str | None = None

    @property
    def privileged(self) -> bool | None:
        if self.user == "root" or self.sigil == "#" or self.command.startswith("sudo "):
            return True
        if self.user is not None:
            return False
        return None


# What may come before a command we know on a prompt line: a ``date`` run first (``date &&
# lsof -p 26768 | wc -l``, to time the count), ``sudo``, and a wrapper that runs it in a
# container or namespace (``docker exec clair netstat``, ``kubectl exec -n x pod -- ss -tan``,
# ``ip netns exec blue ss``, ``nsenter -t 42 -n ss``). Bounded, so a long line costs little.
_RUNS = (
    r"(?:(?:date|uptime)(?:\s+[^\s;&|]{1,40}){0,3}\s*(?:;|&&)\s*)?(?:sudo\s+)?"
    r"(?:(?:docker|podman|nerdctl|crictl)\s+exec\s+"
    r"(?:-{1,2}[\w-]{1,20}(?:[ =][\w.:/-]{1,64})?\s+){0,6}[\w.-]{1,128}\s+(?:--\s+)?"
    r"|kubectl\s+(?:[^\s;&|]{1,128}\s+){0,8}?exec\s+(?:[^\s;&|]{1,128}\s+){0,8}?--\s+"
    r"|ip\s+(?:-n\s+[\w.-]{1,64}|netns\s+exec\s+[\w.-]{1,64})\s+"
    r"|nsenter\s+(?:-{1,2}[\w-]{1,20}(?:[ =]\S{1,64})?\s+){1,8}"
    r")?(?:sudo\s+)?"
)

_PROMPTS = (
    # root@ip-172-1-57-200:~# ss -nltp     deploy@web:/srv$ netstat -tanp
    re.compile(
        r"^(?P<user>[\w.-]+)@(?P<host>[\w.-]+)(?::(?P<cwd>[^#$%\s]*))?\s*(?P<sigil>[#$%])\s*(?P<cmd>.*)$"
    ),
    # [#556#root@ubuntu-1604 ~]$while true; do …       [user@host dir]# cmd
    re.compile(
        r"^\[(?:#\d+#)?(?P<user>[\w.-]+)@(?P<host>[\w.-]+)(?:\s+(?P<cwd>[^\]]*))?\]\s*(?P<sigil>[#$%])\s*(?P<cmd>.*)$"
    ),
    # host:~ user$ netstat -an   (macOS bash)
    re.compile(
        r"^(?P<host>[\w.-]+):(?P<cwd>\S*)\s+(?P<user>[\w.-]+)(?P<sigil>[$#])\s*(?P<cmd>.*)$"
    ),
    # C:\Users\me>netstat -ano     PS C:\Users\me> Get-NetTCPConnection
    re.compile(r"^(?:PS )?(?P<cwd>[A-Za-z]:\\[^>]*)>\s*(?P<cmd>.*)$"),
    # /app # netstat -tn    generic_x86:/ # netstat    (busybox/toybox ash: the directory, then
    # the sigil; only with a command we know, so '/etc/x.conf # comment' stays prose)
    re.compile(
        r"^(?:(?P<host>[\w.-]+):)?(?P<cwd>[~/][^\s#$%]*)\s+(?P<sigil>[#$%])\s+"
        rf"(?P<cmd>{_RUNS}(?:ss|netstat|cat|sysctl|lsof|ls|ll|ulimit|while|for|watch|nstat)\b.*)$"
    ),
    # $ ss -tanp      # netstat -tanp   (only with a command we know, so '# comment' is prose)
    re.compile(
        rf"^(?P<sigil>[#$%])\s+(?P<cmd>{_RUNS}(?:ss|netstat|cat|sysctl|lsof|ls|ll|ulimit|while|for|watch|nstat)\b.*)$"
    ),
    # > ss -np | grep 33000 | wc -l   (a bare '>' prompt, again only before a command we know)
    re.compile(rf"^(?P<sigil>>)\s*(?P<cmd>{_RUNS}(?:ss|netstat|lsof|nstat)\b.*)$"),
    # [ xrd-cp]$ netstat -t | grep TIME_WAIT | wc -l   (a bracketed prompt the user shortened)
    re.compile(r"^\[[^\]]{0,80}\]\s?(?P<sigil>[#$%])\s*(?P<cmd>.*)$"),
)


def match_prompt(line: str) -> Prompt | None:
    for pattern in _PROMPTS:
        match = pattern.match(line)
        if match is not None:
            groups = match.groupdict()
            return Prompt(
                command=(groups.get("cmd") or "").strip(),
                user=groups.get("user"),
                host=groups.get("host"),
                cwd=(groups.get("cwd") or None),
                sigil=groups.get("sigil"),
            )
    return None


_TABLE_COMMAND = re.compile(r"(?:^|[\s;|&(])(?P<tool>ss|netstat)(?P<args>(?:\s+[^\s|;&]+)*)")


@dataclass(frozen=True)
class TableCommand:
    """An ``ss`` or ``netstat`` invocation: the tool, its one-letter flags (long options
    folded to them), and ss's ``state X`` filter."""

    tool: str
    text: str
    flags: frozenset[str]
    state_filter: TcpState | None = None


_LONG_FLAGS = {
    "--processes": "p",
    "--program": "p",
    "--options": "o",
    "--timers": "o",
    "--extended": "e",
    "--extend": "e",
    "--info": "i",
    "--memory": "m",
    "--numeric": "n",
    "--all": "a",
    "--tcp": "t",
    "--listening": "l",
    "--wide": "W",
}

_FILTER_STATES = {"listening": TcpState.LISTEN, "connected": None, "synchronized": None}


def parse_table_command(command: str) -> TableCommand | None:
    """The first ``ss``/``netstat`` call in a command line (inside a pipe or loop too)."""
    match = _TABLE_COMMAND.search(command)
    if match is None:
        return None
    args = match.group("args").split()
    flags: set[str] = set()
    state_filter: TcpState | None = None
    for position, arg in enumerate(args):
        if arg.startswith("--"):
            if arg in _LONG_FLAGS:
                flags.add(_LONG_FLAGS[arg])
        elif arg.startswith("-") and len(arg) > 1:
            flags.update(arg[1:])
        elif arg == "state" and position + 1 < len(args):
            name = args[position + 1].strip("'\"")
            state_filter = _FILTER_STATES.get(name.lower(), parse_state(name))
    return TableCommand(
        tool=match.group("tool"),
        text=command.strip(),
        flags=frozenset(flags),
        state_filter=state_filter,
    )


# --- non-table lines worth keeping ---------------------------------------------------------------

_SYSCTL = re.compile(r"^\s*(?P<name>(?:net|fs)\.[\w.-]+)\s*=\s*(?P<value>.*?)\s*$")

SYSCTL_FIELDS = {
    "net.ipv4.tcp_fin_timeout": "tcp_fin_timeout",
    "net.ipv4.tcp_max_tw_buckets": "tcp_max_tw_buckets",
    "net.core.somaxconn": "somaxconn",
    "net.ipv4.tcp_syn_retries": "tcp_syn_retries",
    "net.ipv4.tcp_syn_linear_timeouts": "tcp_syn_linear_timeouts",
    "net.ipv4.tcp_synack_retries": "tcp_synack_retries",
    "net.ipv4.tcp_orphan_retries": "tcp_orphan_retries",
    "net.ipv4.tcp_max_orphans": "tcp_max_orphans",
    "net.ipv4.tcp_tw_reuse": "tcp_tw_reuse",
    "net.ipv4.tcp_syncookies": "tcp_syncookies",
    "net.ipv4.tcp_abort_on_overflow": "tcp_abort_on_overflow",
    "net.ipv4.tcp_retries2": "tcp_retries2",
    "net.ipv4.tcp_keepalive_time": "tcp_keepalive_time",
    "net.ipv4.tcp_keepalive_intvl": "tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes": "tcp_keepalive_probes",
    "net.ipv4.tcp_max_syn_backlog": "tcp_max_syn_backlog",
    "net.netfilter.nf_conntrack_max": "nf_conntrack_max",
    "net.nf_conntrack_max": "nf_conntrack_max",
}


def match_sysctl(line: str) -> tuple[str, str] | None:
    """``net.ipv4.tcp_max_tw_buckets = 65536`` -> (name, value text); any ``net.``/``fs.``
    assignment matches, whether or not we keep it."""
    match = _SYSCTL.match(line)
    if match is None:
        return None
    return match.group("name"), match.group("value")


_SUMMARY = re.compile(
    r"^\s*(?:(?P<state1>[A-Z][A-Z0-9_-]*)\s+(?P<count1>\d+)|(?P<count2>\d+)\s+(?P<state2>[A-Z][A-Z0-9_-]*))\s*(?:--.*)?$",
    re.ASCII,
)


def match_summary(line: str) -> tuple[TcpState, int] | None:
    """A per-state count as ``awk '{++S[$NF]} END {…}'`` (``TIME_WAIT 65547``) or
    ``sort | uniq -c`` (``  19 CLOSE_WAIT``) print it; a trailing ``-- comment`` is allowed."""
    match = _SUMMARY.match(line)
    if match is None:
        return None
    word = match.group("state1") or match.group("state2")
    count = match.group("count1") or match.group("count2")
    state = state_word(word)
    if state is None or state in (TcpState.UNKNOWN,) or len(count) > 12:
        return None
    return state, int(count)


_MAX_OPEN_FILES = re.compile(r"^Max open files\s+(?P<soft>\S+)\s+(?P<hard>\S+)")


def match_fd_limits(line: str) -> tuple[int | None, int | None] | None:
    """``Max open files  1024  4096  files`` (from /proc/PID/limits) -> (soft, hard);
    ``unlimited`` is None."""
    match = _MAX_OPEN_FILES.match(line)
    if match is None:
        return None
    soft, hard = match.group("soft"), match.group("hard")
    return ascii_int(soft), ascii_int(hard)


_COUNTER_SENTENCES = (
    (
        re.compile(r"^\s*(\d{1,19}) times the listen queue of a socket overflowed\s*$", re.A),
        "ListenOverflows",
    ),
    (
        re.compile(r"^\s*(\d{1,19}) SYNs to LISTEN sockets (?:dropped|ignored)\s*$", re.A),
        "ListenDrops",
    ),
    (
        re.compile(r"^\s*(\d{1,19}) connections aborted due to timeout\s*$", re.A),
        "TCPAbortOnTimeout",
    ),
    # netstat -s (net-tools) for the SYN queue, memory and receive-side counters.
    (re.compile(r"^\s*(\d{1,19}) SYN cookies sent\s*$", re.A), "SyncookiesSent"),
    (re.compile(r"^\s*(\d{1,19}) SYN cookies received\s*$", re.A), "SyncookiesRecv"),
    (re.compile(r"^\s*(\d{1,19}) invalid SYN cookies received\s*$", re.A), "SyncookiesFailed"),
    (
        re.compile(r"^\s*(\d{1,19}) connections aborted due to memory pressure\s*$", re.A),
        "TCPAbortOnMemory",
    ),
    (
        re.compile(
            r"^\s*(\d{1,19}) packets pruned from receive queue because of socket buffer"
            r" overrun\s*$",
            re.A,
        ),
        "PruneCalled",
    ),
)
# What netstat -s prints, under TcpExt:, for a counter it has no sentence for.
_NETSTAT_RAW = re.compile(
    r"^\s*(?P<name>TCPReqQFullDrop|TCPReqQFullDoCookies|TCPMemoryPressures|TCPAbortOnMemory"
    r"|TCPRcvQDrop|TCPBacklogDrop|TCPTimeWaitOverflow|TCPMemoryPressuresChrono"
    r"|TCPChallengeACK)"
    r": (?P<value>\d{1,19})\s*$",
    re.ASCII,
)
_NSTAT = re.compile(
    r"^\s*TcpExt(?P<name>[A-Za-z]+)\s+(?P<value>\d{1,19})(?:\s+[\d.]+)?\s*$", re.ASCII
)
# /proc/net/sockstat's TCP line, pasted as it is: host-wide socket counts (mem in pages).
_SOCKSTAT_TCP = re.compile(
    r"^\s*TCP: inuse (?P<inuse>\d{1,12}) orphan (?P<orphan>\d{1,12}) tw (?P<tw>\d{1,12})"
    r" alloc (?P<alloc>\d{1,12}) mem (?P<mem>\d{1,12})\s*$",
    re.ASCII,
)


def match_counter(line: str) -> tuple[str, int] | None:
    """A TcpExt counter from ``netstat -s`` prose or ``nstat`` output, by qualified name."""
    for pattern, name in _COUNTER_SENTENCES:
        match = pattern.match(line)
        if match is not None:
            return f"TcpExt.{name}", int(match.group(1))
    match = _NSTAT.match(line) or _NETSTAT_RAW.match(line)
    if match is not None:
        return f"TcpExt.{match.group('name')}", int(match.group("value"))
    return None


def match_sockstat(line: str) -> dict[str, int] | None:
    """``TCP: inuse 5 orphan 0 tw 8 alloc 7 mem 2`` (a pasted /proc/net/sockstat) ->
    ``sockstat.TCP.inuse`` … ``sockstat.TCP.mem``, as the /proc source names them."""
    match = _SOCKSTAT_TCP.match(line)
    if match is None:
        return None
    return {f"sockstat.TCP.{name}": int(value) for name, value in match.groupdict().items()}


# ss -s's TCP line, as iproute2 prints it now and before 4.x (with synrecv, "tw/M", ports):
#   TCP:   196 (estab 0, closed 195, orphaned 20, timewait 137)
#   TCP:   48 (estab 1, closed 31, orphaned 0, synrecv 0, timewait 0/0), ports 13
_SS_SUMMARY_TCP = re.compile(
    r"^\s*TCP:\s+(?P<total>\d{1,12})\s+\((?P<parts>[^()]*)\)(?:,\s*ports\s+\d{1,6})?\s*$",
    re.ASCII,
)
_SS_SUMMARY_STATES = {
    "estab": TcpState.ESTABLISHED,
    "synrecv": TcpState.SYN_RECV,
    "timewait": TcpState.TIME_WAIT,
}


@dataclass(frozen=True)
class SsSummary:
    """What ``ss -s`` counts of TCP: sockets per state (the states it names), and orphans."""

    total: int
    states: dict[TcpState, int]
    orphaned: int | None


def match_ss_summary(line: str) -> SsSummary | None:
    """``TCP:   4116 (estab 1077, closed 2963, orphaned 0, synrecv 0, timewait 2962/0), ports 0``.
    ``closed`` is left out: ss counts there every socket not hashed, which is no one state."""
    match = _SS_SUMMARY_TCP.match(line)
    if match is None:
        return None
    states: dict[TcpState, int] = {}
    orphaned: int | None = None
    for part in match.group("parts").split(","):
        words = part.split()
        if len(words) != 2:
            return None
        value = ascii_int(words[1].split("/")[0], 12)
        if value is None:
            return None
        if words[0] in _SS_SUMMARY_STATES:
            states[_SS_SUMMARY_STATES[words[0]]] = value
        elif words[0] == "orphaned":
            orphaned = value
    return SsSummary(int(match.group("total")), states, orphaned)


# ``ll /proc/15902/fd | wc -l``: how many lines the listing prints besides one per fd.
_FD_COUNT_PART = re.compile(
    r"^\s*(?P<ls>ls|ll|ls\s+-l|ls\s+-la|ls\s+-al|ls\s+-1)\s+/proc/(?P<pid>\d{1,9})/fd/?\s*\|\s*wc\s+-l\s*$",
    re.ASCII,
)
_EXTRA_LINES = {"ls": 0, "ls -1": 0, "ls -l": 1, "ll": 3, "ls -la": 3, "ls -al": 3}


def fd_count_commands(command: str) -> list[tuple[int, int, str] | None]:
    """For each ``;``-separated part of a command whose output is one number, what that number
    says: ``(pid, extra lines to subtract, part)`` for a plain listing of /proc/PID/fd counted
    with ``wc -l``, ``None`` for any other part (a filtered count)."""
    parts = [part for part in command.split(";") if part.strip()]
    result: list[tuple[int, int, str] | None] = []
    for part in parts:
        if not re.search(r"\|\s*wc\s+-l\s*$", part):
            return []  # not a list of counts
        match = _FD_COUNT_PART.match(part)
        if match is None:
            result.append(None)
            continue
        listing = " ".join(match.group("ls").split())
        result.append((int(match.group("pid")), _EXTRA_LINES[listing], part.strip()))
    return result


# --- counts a transcript printed (issue #22) -----------------------------------------------------

# A state as a grep pattern names it, whole or by its first letters (``grep CLOS``): longest
# spellings first, and CLOSE_WAIT before CLOSING and CLOSE, the state a prefix usually means.
_STATE_SPELLINGS = (
    ("ESTABLISHED", TcpState.ESTABLISHED),
    ("CLOSE_WAIT", TcpState.CLOSE_WAIT),
    ("CLOSE-WAIT", TcpState.CLOSE_WAIT),
    ("TIME_WAIT", TcpState.TIME_WAIT),
    ("TIME-WAIT", TcpState.TIME_WAIT),
    ("FIN_WAIT2", TcpState.FIN_WAIT2),
    ("FIN-WAIT-2", TcpState.FIN_WAIT2),
    ("FIN_WAIT1", TcpState.FIN_WAIT1),
    ("FIN-WAIT-1", TcpState.FIN_WAIT1),
    ("SYN_SENT", TcpState.SYN_SENT),
    ("SYN-SENT", TcpState.SYN_SENT),
    ("SYN_RECV", TcpState.SYN_RECV),
    ("SYN-RECV", TcpState.SYN_RECV),
    ("LAST_ACK", TcpState.LAST_ACK),
    ("LAST-ACK", TcpState.LAST_ACK),
    ("LISTEN", TcpState.LISTEN),
    ("CLOSING", TcpState.CLOSING),
    ("ESTAB", TcpState.ESTABLISHED),
    # BSD's word for a socket whose connection is gone while its descriptor is still open
    # (Linux's CLOSE); after the others, so that a prefix such as CLOS still means CLOSE_WAIT.
    ("CLOSED", TcpState.CLOSE),
)
_MIN_STATE_PREFIX = 4
_COUNT_TOOLS = re.compile(rf"^\s*{_RUNS}(?:ss|netstat|lsof|grep|egrep|cat)\b")
_PGREP = re.compile(r"`pgrep\s+(?:-\w+\s+)?([\w.-]+)`|\$\(pgrep\s+(?:-\w+\s+)?([\w.-]+)\)")


# Words grepped from a listing that name no host: its protocol and family columns.
_NOT_HOSTS = frozenset({"tcp", "tcp4", "tcp6", "tcp46", "udp", "udp4", "udp6", "inet", "inet6"})


def grep_state(pattern: str) -> TcpState | None:
    """The state a grep pattern selects: a state word inside it (``127.0.0.1.*TIME_WAIT``) or
    a pattern that is the first letters of one (``CLOS``, ``ESTA``, ``TIME``)."""
    upper = pattern.upper()
    for spelling, state in _STATE_SPELLINGS:
        if spelling in pattern:
            return state
    if (
        pattern == upper
        and len(pattern) >= _MIN_STATE_PREFIX
        and re.fullmatch(r"[A-Z_-]+", pattern)
    ):
        for spelling, state in _STATE_SPELLINGS:
            if spelling.startswith(pattern):
                return state
    return None


@dataclass(frozen=True)
class CountPart:
    """One pipeline of a command line whose output is a single number: what it counted."""

    text: str
    state: TcpState | None  # the state it selected; None: no one state (not a state count)
    selects: str | None  # what else it selected, as the paste says it
    program: str | None  # a program the selection names (``pid=`pgrep X```, ``grep java``)
    pids: tuple[int, ...]
    counts_header: bool  # wc -l counted ss's header line too
    writes: str | None = None  # ``> FILE``: the pipeline's output went to a file, not a count
    # A host name grepped from rows that show no program: the other end, taken for the peer.
    peer: str | None = None


def _split_top(command: str, separators: str) -> list[str]:
    """Split on ``separators`` outside quotes and backticks."""
    parts: list[str] = []
    current: list[str] = []
    quote: str | None = None
    index = 0
    while index < len(command):
        char = command[index]
        if quote is not None:
            if char == quote:
                quote = None
            current.append(char)
        elif char in "'\"`":
            quote = char
            current.append(char)
        elif command.startswith("&&", index) and "&" in separators:
            parts.append("".join(current))
            current = []
            index += 2
            continue
        elif char in separators and char != "&":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _unquote(word: str) -> str:
    if len(word) >= 2 and word[0] == word[-1] and word[0] in "'\"":
        return word[1:-1]
    return word


def _words(stage: str) -> list[str]:
    """A pipeline stage's words, quotes kept together (a quoted pattern may hold blanks)."""
    return [_unquote(word) for word in re.findall(r"\"[^\"]*\"|'[^']*'|`[^`]*`|\S+", stage)]


def listing_state(command: str) -> TcpState | None:
    """The one state a listing command narrows its rows to -- ss's ``state fin-wait-2``, or a
    grep of a state word (``netstat -tpn | grep FIN_WAIT2``) -- so that a state missing from
    its rows is known not to have been shown, rather than absent. None where the command shows
    every state, or what it keeps cannot be told (an alternation, a negated grep)."""
    for part in _split_top(command, ";&"):
        table = parse_table_command(part)
        if table is None:
            continue
        if table.state_filter is not None:
            return table.state_filter
        for stage in _split_top(part, "|")[1:]:
            words = _words(stage)
            if not words or words[0] not in ("grep", "egrep", "fgrep"):
                continue
            options = [word for word in words[1:] if word.startswith("-") and len(word) > 1]
            operands = [word for word in words[1:] if not (word.startswith("-") and len(word) > 1)]
            if any("v" in option or option.startswith("-e") for option in options):
                return None  # a negation, or patterns given by -e: not one state
            if not operands:
                continue
            if "|" in operands[0]:
                return None  # an alternation keeps several states
            found = grep_state(operands[0])
            if found is not None:
                return found
        return None
    return None


# Pipeline stages that pass every line through: they reorder, page or lay out, never select.
_PASS_THROUGH = frozenset({"cat", "column", "less", "more", "sort", "tee", "expand"})
# Words of an ss filter expression: a listing that uses one shows only what it matches.
_SS_FILTER_WORDS = frozenset({"sport", "dport", "src", "dst", "(", ")", "exclude"})


def lists_every_listener(command: str) -> bool:
    """Whether the first ``ss``/``netstat`` call of ``command`` prints every listening socket
    of its families and the pipeline keeps every line it prints: ``ss -lnt``, ``ss -tan``,
    ``netstat -lntp``, ``ss state listening``, with no grep, no awk pattern, no filter
    expression and no head/tail. Then a listener missing from the rows is absent from the
    host, not left out by the paste. False where anything may have narrowed them."""
    parts = [part for part in _split_top(command, ";&") if parse_table_command(part)]
    if not parts:
        return False
    table = parse_table_command(parts[0])
    assert table is not None
    shows_listeners = bool({"l", "a"} & table.flags) or table.state_filter is TcpState.LISTEN
    stages = _split_top(parts[0], "|")
    own = _words(stages[0])
    tool_at = own.index(table.tool) if table.tool in own else 0
    arguments = [w for w in own[tool_at + 1 :] if not w.startswith("-")]
    if table.state_filter is not None:
        arguments = arguments[2:] if arguments[:1] == ["state"] else arguments
    if table.state_filter not in (None, TcpState.LISTEN) or arguments:
        return False  # another state, a filter expression or an address selects rows
    if any(w.strip("'\"()") in _SS_FILTER_WORDS for w in own):
        return False
    for stage in stages[1:]:
        words = _words(stage)
        if not words:
            continue
        if words[0] in _PASS_THROUGH:
            continue
        if (
            words[0] in ("grep", "egrep")
            and len(words) == 2
            and grep_state(words[1]) is (TcpState.LISTEN)
        ):
            continue  # a grep of the LISTEN state word keeps every listener
        if words[0] == "awk" and len(words) == 2 and words[1].lstrip().startswith("{"):
            program = words[1]
            if not any(token in program for token in ("if", "next", "~", "==", "!=", "exit")):
                continue  # an awk without a pattern, printing every line
        return False
    return shows_listeners


_LINE_LIMIT = re.compile(r"(?:-n\s*|--lines=|-)(\d+)$")


def listing_limit(command: str) -> tuple[str, int] | None:
    """The ``head``/``tail`` stage that ends a listing command and the lines it lets through
    (10 unless it says): where the listing printed exactly that many lines, the rest of it was
    cut off. None where no such stage ends the pipeline (a stage after it may have dropped
    lines itself), or it cuts nothing off (``tail -n +2`` skips the header, ``head -n -5``
    keeps all but the last)."""
    for part in _split_top(command, ";&"):
        if parse_table_command(part) is None:
            continue
        stages = _split_top(part, "|")
        words = _words(stages[-1]) if len(stages) > 1 else []
        if not words or words[0] not in ("head", "tail"):
            return None
        options = " ".join(words[1:])
        if not options:
            return stages[-1], 10
        limit = _LINE_LIMIT.fullmatch(options)
        return (stages[-1], int(limit.group(1))) if limit is not None else None
    return None


def count_part(part: str, files: dict[str, CountPart] | None = None) -> CountPart | None:
    """What one ``;``/``&&`` part of a command counted, if its output is one number (it ends
    in ``| wc -l`` or greps with ``-c``), or where it saved a selection (``> FILE``)."""
    text = part.strip()
    text = re.sub(r"^(?:do|then)\s+", "", text)
    writes: str | None = None
    redirect = re.search(r"\s>\s*(\S+)\s*$", text)
    if redirect is not None:
        writes = redirect.group(1)
        text = text[: redirect.start()].strip()
    stages = _split_top(text, "|")
    if not stages:
        return None
    counted = writes is None and bool(re.fullmatch(r"wc\s+-l", stages[-1]))
    grep_count = False
    state: TcpState | None = None
    selects: list[str] = []
    program: str | None = None
    peer: str | None = None
    pids: list[int] = []
    grepped = False
    source = stages[0]
    inherited: CountPart | None = None
    table = parse_table_command(source)
    if table is not None and table.state_filter is not None:
        state = table.state_filter
    # A word grepped from ss or netstat output names a program only where the rows show one
    # (-p); without it the word can only be in an address: a host or service name.
    shows_programs = table is None or "p" in table.flags
    for stage in stages:
        words = _words(stage)
        if not words or words[0] not in ("grep", "egrep", "fgrep"):
            continue
        options = [word for word in words[1:] if word.startswith("-") and len(word) > 1]
        operands = [word for word in words[1:] if not (word.startswith("-") and len(word) > 1)]
        if any("v" in option for option in options):
            continue  # a negation selects what it is not; nothing to name
        if any("c" in option and not option.startswith("--") for option in options):
            grep_count = True
        if not operands:
            continue
        grepped = True
        pattern = operands[0]
        if len(operands) > 1 and files is not None and operands[1] in files:
            inherited = files[operands[1]]
        found = grep_state(pattern)
        if found is not None and state is None:
            state = found
            rest = pattern
            for spelling, _ in _STATE_SPELLINGS:
                rest = rest.replace(spelling, "")
            if rest == pattern:  # named by its first letters (grep CLOS): nothing else
                rest = ""
            rest = rest.replace(".*", " ").strip(" .*")
            if rest:
                selects.append(rest)
            continue
        pgrep = _PGREP.search(pattern)
        if pgrep is not None:
            program = pgrep.group(1) or pgrep.group(2)
        pid = re.fullmatch(r"pid=(\d{1,9}),?", pattern)
        if pid is not None:
            pids.append(int(pid.group(1)))
        elif pgrep is None and shows_programs and re.fullmatch(r"[A-Za-z][\w.-]*", pattern):
            program = program or pattern
        elif (
            pgrep is None
            and table is not None
            and "n" not in table.flags  # numeric addresses: a word matches no host there
            and re.fullmatch(r"[A-Za-z][\w.-]*", pattern)
            and pattern.lower() not in _NOT_HOSTS
        ):
            peer = peer or pattern
        selects.append(pattern)
    if inherited is not None:
        selects = [*(inherited.selects or "").split(", "), *selects]
        selects = [item for item in selects if item]
        program = program or inherited.program
        peer = peer or inherited.peer
        pids = pids or list(inherited.pids)
        state = state or inherited.state
    if not (counted or grep_count or writes):
        return None
    counts_header = (
        counted
        and not grepped
        and table is not None
        and table.tool == "ss"
        and "H" not in table.flags
    )
    return CountPart(
        text=part.strip(),
        state=state,
        selects=", ".join(selects) or None,
        program=program,
        pids=tuple(pids),
        counts_header=counts_header,
        writes=writes,
        peer=peer,
    )


def count_parts(command: str, files: dict[str, CountPart]) -> list[CountPart | None]:
    """For each ``;``/``&&`` part of a command line, what its printed number counts (None for
    a part that prints no count, such as ``sleep 5``); ``[]`` when no part prints one. Parts
    that save their output to a file are remembered in ``files`` for a later ``grep X FILE``."""
    result: list[CountPart | None] = []
    for part in _split_top(command, ";&"):
        if part in ("done", "fi") or re.match(r"^(?:while|for|if|sleep|echo)\b", part):
            result.append(None)
            continue
        counted = count_part(part, files)
        if counted is not None and counted.writes is not None:
            files[counted.writes] = counted
            result.append(None)
            continue
        result.append(counted)
    return result if any(part is not None for part in result) else []


_AWK_MATCH = re.compile(r"\$\d+\s*~\s*/([^/]+)/")


def histogram_selection(command: str) -> str | None:
    """What a per-state histogram pipeline selected, ``""`` for nothing; ``None`` when the
    command prints no histogram. A histogram is an ss/netstat listing whose state column is
    counted per value: ``| sort | uniq -c`` or an awk array (``{++S[$NF]} END {...}``). Its
    selection is what its greps and awk matches kept (``grep :443``, ``$5 ~ /:8139/``)."""
    stages = _split_top(command.strip(), "|")
    if not stages or parse_table_command(stages[0]) is None:
        return None
    counted = False
    selects: list[str] = []
    for stage in stages[1:]:
        words = _words(stage)
        if not words:
            continue
        if words[0] == "uniq" and "-c" in words[1:]:
            counted = True
        elif words[0] in ("awk", "gawk", "mawk"):
            program = " ".join(words[1:])
            if "++" in program and "END" in program:
                counted = True
            selects.extend(match.group(1) for match in _AWK_MATCH.finditer(program))
        elif words[0] in ("grep", "egrep", "fgrep"):
            options = [word for word in words[1:] if word.startswith("-") and len(word) > 1]
            operands = [word for word in words[1:] if not (word.startswith("-") and len(word) > 1)]
            if operands and not any("v" in option for option in options):
                selects.append(operands[0])
    return ", ".join(selects) if counted else None


def looks_like_count_command(line: str) -> bool:
    """A bare command line (no prompt) whose output is a count: ``netstat -an | grep 8090 |
    grep CLOSE_WAIT | wc -l``."""
    return bool(_COUNT_TOOLS.match(line)) and bool(
        re.search(r"\|\s*wc\s+-l\b|\bgrep\s+(?:-\w*c\w*)\b", line)
    )
