"""Kernel log lines in a paste: the kernel's own words that a TCP limit was hit.

People paste ``dmesg``, ``journalctl -k`` and ``/var/log/messages`` beside their tables, and
the kernel printing one of these lines is the strongest fact in the paste: the limit *was*
hit, at the time of the line. Each message is matched whole, after the prefixes a log puts
before it, so prose that quotes it and a program's own log with the same words are not read.

The texts, as the kernel prints them (Linux source; ``TCP: `` is the ``pr_fmt`` of the files
that print without it in the format string):

* orphans, net/ipv4/tcp.c ``tcp_check_oom()`` (3.x on): ``TCP: too many orphaned sockets``.
  2.6 kernels printed ``TCP: too many of orphaned sockets`` from ``tcp_close()``. It is printed
  when the orphans are over ``tcp_max_orphans`` -- or over a half or a quarter of it for a
  connection whose peer has been silent long or sent an ICMP error (the ``shift`` of
  ``tcp_out_of_resources()``) -- and the kernel then resets that orphan (TCPAbortOnMemory).
* TCP memory, the same function: ``TCP: out of memory -- consider tuning tcp_mem``: TCP's
  memory over ``tcp_mem``'s third number while this socket has more than a minimum queued.
* ``Out of socket memory``: kernels up to 2.6.38, net/ipv4/tcp_timer.c
  ``tcp_out_of_resources()``, for either of the two above: the line does not say which.
* SYN queue, ``tcp_syn_flood_action()``: since 5.10 (net/ipv4/tcp_input.c)
  ``TCP: request_sock_TCP: Possible SYN flooding on port 127.0.0.1:5555. Sending cookies.``
  (``[::]:80`` for IPv6, ``request_sock_TCPv6``); 4.x--5.9 name the port alone and end with
  ``  Check SNMP counters.``; 3.x print ``TCP: TCP: Possible SYN flooding on port 80. ...``
  (``TCPv6``); 2.6 ``TCP: Possible SYN flooding on port 80. Sending cookies.`` and before it
  ``possible SYN flooding on port 80. Sending cookies.``. ``Dropping request`` instead of
  ``Sending cookies`` when ``tcp_syncookies`` is 0. Since 3.x it is printed once per listening
  socket (``synflood_warned``), so the count of lines is of listeners (or restarts), not of
  SYNs; the counters TCPReqQFullDoCookies / TCPReqQFullDrop count those.
* conntrack, net/netfilter/nf_conntrack_core.c: ``nf_conntrack: nf_conntrack: table full,
  dropping packet`` (the module's prefix twice, in recent kernels), ``nf_conntrack: table full,
  dropping packet.`` in older ones, ``ip_conntrack: table full, dropping packet.`` in 2.4 and
  early 2.6 kernels (the ip_conntrack module).
* TIME_WAIT, net/ipv4/tcp_minisocks.c ``tcp_time_wait()``: ``TCP: time wait bucket table
  overflow`` -- printed by 2.6 kernels only; since the TCPTimeWaitOverflow counter replaced
  it, only the counter tells (the live test checks that the running kernel is silent).

``net_ratelimit: N callbacks suppressed`` (older: ``printk: N messages suppressed.``) says N more
messages were not printed, of any kind: kept as a count beside the messages, never added to one
of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tcphealth.model import KernelEvent

# Words one of the messages holds: a line without any of them is not looked at further, so
# a paste of a million rows pays a few substring checks per line.
_HINTS = (
    "orphaned",
    "tcp_mem",
    "socket memory",
    "SYN flooding",
    "table full",
    "bucket table",
    "suppressed",
)

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
# What a log puts before the kernel's text, outermost first; each is optional, and what a
# prefix names as the time is kept (the syslog time over dmesg's, as it is the wall clock).
_SYSLOG = re.compile(
    r"(?:<\d{1,3}>\s*)?"  # a raw syslog priority
    r"(?P<stamp>"
    rf"{_MONTH} [ \d]\d \d\d:\d\d:\d\d(?:\.\d{{1,9}})?"  # syslog, journalctl's short
    r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?"  # ISO forms
    rf"|{_DAY} {_MONTH} [ \d]\d \d\d:\d\d:\d\d \d{{4}}"  # OpenWrt's logread
    r")"
    # the host (some routers' syslog prints none), or logread's facility.level
    r"(?: [\w.-]{1,255})? kernel:\s*",
    re.ASCII,
)
_KERNEL_TAG = re.compile(r"(?:kern\.[a-z]{3,7} )?kernel:\s*", re.ASCII)
_DMESG = re.compile(
    r"(?:<\d{1,3}>\s*)?"  # dmesg -r
    r"(?:(?:kern|user|daemon)\s*:\s*(?:emerg|alert|crit|err|warn|notice|info|debug)\s*:\s*)?"  # -x
    r"(?:\[(?P<stamp>\s*\d{1,10}\.\d{1,9}"  # [ 1234.567890]
    rf"|{_DAY} {_MONTH} [ \d]\d \d\d:\d\d:\d\d \d{{4}}"  # dmesg -T
    r")\]\s*"
    r"|(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d,\d{1,9}[+-]\d\d:?\d\d)\s+"  # --time-format iso
    r")?",
    re.ASCII,
)

_ORPHANS = re.compile(r"(?:(?:MP)?TCP: )?too many (?:of )?orphaned sockets\.?", re.ASCII)
_TCP_MEMORY = re.compile(r"(?:TCP: )?out of memory -- consider tuning tcp_mem", re.ASCII)
_SOCKET_MEMORY = re.compile(r"Out of socket memory", re.ASCII)
_SYN_FLOOD = re.compile(
    r"(?:TCP: )?(?:(?:TCP|TCPv6|request_sock_[A-Za-z0-9_]{1,20}): )?"
    r"[Pp]ossible SYN flooding on port "
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]{2,45})\]:(?P<v6port>\d{1,5})"
    r"|(?P<v4>\d{1,3}(?:\.\d{1,3}){3}):(?P<v4port>\d{1,5})"
    r"|(?P<port>\d{1,5}))"
    r"\. (?P<action>Sending cookies|Dropping request)\.(?:\s+Check SNMP counters\.)?",
    re.ASCII,
)
_CONNTRACK = re.compile(r"(?:(?:nf|ip)_conntrack: ){1,2}table full, dropping packet\.?", re.ASCII)
_TIME_WAIT = re.compile(r"(?:TCP: )?time wait bucket table overflow\.?", re.ASCII)
_SUPPRESSED = re.compile(
    r"(?:net_ratelimit: (\d{1,12}) callbacks|printk: (\d{1,12}) messages) suppressed\.?", re.ASCII
)

_SIMPLE: tuple[tuple[re.Pattern[str], KernelEvent], ...] = (
    (_ORPHANS, KernelEvent.ORPHANS),
    (_TCP_MEMORY, KernelEvent.TCP_MEMORY),
    (_SOCKET_MEMORY, KernelEvent.SOCKET_MEMORY),
    (_CONNTRACK, KernelEvent.CONNTRACK_FULL),
    (_TIME_WAIT, KernelEvent.TIME_WAIT_OVERFLOW),
)

# A log line is short; a longer one is not looked at (the patterns stay linear anyway).
_MAX_LINE = 512


@dataclass(frozen=True)
class KernelLine:
    """One kernel log line read: the event, the time printed on it (as text) and, for a SYN
    flood, the listener and what was done with the SYN."""

    event: KernelEvent
    stamp: str | None = None
    port: int | None = None
    address: str | None = None
    cookies: bool | None = None


@dataclass(frozen=True)
class Suppressed:
    """``net_ratelimit: N callbacks suppressed``."""

    count: int
    stamp: str | None = None


def match_kernel_line(line: str) -> KernelLine | Suppressed | None:
    """The kernel message a log line holds, or None. The message must be the whole of the
    line after the log's prefixes (syslog or journal time, host and ``kernel:``; dmesg's
    time), so a sentence quoting it or another program's log line is not one."""
    stripped = line.strip()
    if len(stripped) > _MAX_LINE or not any(hint in stripped for hint in _HINTS):
        return None
    stamp: str | None = None
    rest = stripped
    syslog = _SYSLOG.match(rest)
    if syslog is not None:
        stamp = syslog.group("stamp")
        rest = rest[syslog.end() :]
    else:
        tag = _KERNEL_TAG.match(rest)
        if tag is not None:
            rest = rest[tag.end() :]
    dmesg = _DMESG.match(rest)
    if dmesg is not None and dmesg.end() > 0:
        stamp = stamp or (dmesg.group("stamp") or dmesg.group("iso") or "").strip() or None
        rest = rest[dmesg.end() :]
    rest = rest.rstrip()
    suppressed = _SUPPRESSED.fullmatch(rest)
    if suppressed is not None:
        return Suppressed(int(suppressed.group(1) or suppressed.group(2)), stamp)
    for pattern, event in _SIMPLE:
        if pattern.fullmatch(rest):
            return KernelLine(event, stamp)
    flood = _SYN_FLOOD.fullmatch(rest)
    if flood is None:
        return None
    text = flood.group("v6port") or flood.group("v4port") or flood.group("port")
    port = int(text)
    if port > 65535:
        return None
    address = flood.group("v6") or flood.group("v4")
    return KernelLine(
        KernelEvent.SYN_FLOOD,
        stamp,
        port=port,
        address=address,
        cookies=flood.group("action") == "Sending cookies",
    )
