"""Kernel log lines in a paste (issue #22): dmesg, journalctl -k and syslog lines in which the
kernel says a TCP limit was hit are read as facts and feed the finding of that limit, with the
line quoted and the number of times the paste shows it.

Each message is checked in the exact text the kernel source prints (net/ipv4/tcp.c,
tcp_timer.c, tcp_input.c, tcp_minisocks.c, net/netfilter/nf_conntrack_core.c; the versions
are in tcphealth/sources/text/kernel_log.py) and in lines from real pastes, each named by the
thread it comes from; and against near misses: the message quoted in prose, a program's own
log line with the same words, a command that greps for it."""

# ruff: noqa: E501 -- log lines are kept as wide as they were printed

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tcphealth.cli import main
from tcphealth.diagnose import diagnose
from tcphealth.model import Blame, Finding, KernelEvent, Severity, Snapshot, SubjectKind
from tcphealth.sources.snapshot_file import snapshot_from_json, snapshot_to_json
from tcphealth.sources.text.kernel_log import KernelLine, Suppressed, match_kernel_line
from tests.pastes import last

ORPHANS = KernelEvent.ORPHANS
MEMORY = KernelEvent.TCP_MEMORY
OLD = KernelEvent.SOCKET_MEMORY
FLOOD = KernelEvent.SYN_FLOOD
CONNTRACK = KernelEvent.CONNTRACK_FULL
TW = KernelEvent.TIME_WAIT_OVERFLOW

# (line, event, time printed, SYN flood's (port, address, cookies))
Form = tuple[str, KernelEvent, str | None, tuple[int, str | None, bool] | None]

FROM_THE_KERNEL_SOURCE: list[Form] = [
    # net/ipv4/tcp.c tcp_check_oom(), with the file's pr_fmt "TCP: "
    ("TCP: too many orphaned sockets", ORPHANS, None, None),
    ("TCP: out of memory -- consider tuning tcp_mem", MEMORY, None, None),
    # 2.6: tcp_close()'s printk, and tcp_timer.c tcp_out_of_resources() for either limit
    ("TCP: too many of orphaned sockets", ORPHANS, None, None),
    ("Out of socket memory", OLD, None, None),
    # tcp_syn_flood_action(): 5.10+ with the listener's address, IPv4 and IPv6
    (
        "TCP: request_sock_TCP: Possible SYN flooding on port 127.0.0.1:5555. Sending cookies.",
        FLOOD,
        None,
        (5555, "127.0.0.1", True),
    ),
    (
        "TCP: request_sock_TCPv6: Possible SYN flooding on port [::]:80. Dropping request.",
        FLOOD,
        None,
        (80, "::", False),
    ),
    # 4.x-5.9: the port alone, "  Check SNMP counters."
    (
        "TCP: request_sock_TCP: Possible SYN flooding on port 8080. Sending cookies.  Check SNMP counters.",
        FLOOD,
        None,
        (8080, None, True),
    ),
    # 3.x: proto "TCP" after the pr_fmt; 2.6.38: syn_flood_warning(); 2.2/2.4 lowercase
    (
        "TCP: TCP: Possible SYN flooding on port 80. Sending cookies.  Check SNMP counters.",
        FLOOD,
        None,
        (80, None, True),
    ),
    ("TCP: Possible SYN flooding on port 80. Dropping request.", FLOOD, None, (80, None, False)),
    ("possible SYN flooding on port 80. Sending cookies.", FLOOD, None, (80, None, True)),
    # nf_conntrack_core.c __nf_conntrack_alloc(): the module's pr_fmt before the text's own
    ("nf_conntrack: nf_conntrack: table full, dropping packet", CONNTRACK, None, None),
    ("nf_conntrack: table full, dropping packet.", CONNTRACK, None, None),
    # 2.6 tcp_minisocks.c tcp_time_wait()
    ("TCP: time wait bucket table overflow", TW, None, None),
]

FROM_REAL_PASTES: list[Form] = [
    # haproxy/haproxy#958 (fixtures/realworld/threads/github-haproxy-958_*), dmesg -T
    (
        "[Mon Nov 16 14:55:04 2020] TCP: too many orphaned sockets",
        ORPHANS,
        "Mon Nov 16 14:55:04 2020",
        None,
    ),
    # the LKML thread Andi Kleen answered ("the closed sockets are RST instead"), /var/log/messages
    ("kernel: TCP: too many of orphaned sockets", ORPHANS, None, None),
    # tempesta-tech/tempesta#1763, dmesg with the trailing blanks of the paste
    (
        "[  179.636034] TCP: out of memory -- consider tuning tcp_mem                                                                                                   ",
        MEMORY,
        "179.636034",
        None,
    ),
    # cuberite/cuberite#4596 (kernel 4.4)
    (
        "[375852.589465] TCP: request_sock_TCP: Possible SYN flooding on port 8080. Sending cookies.  Check SNMP counters.",
        FLOOD,
        "375852.589465",
        (8080, None, True),
    ),
    # vtrunkd#159: blanks inside the brackets
    (
        "[    9.649346] TCP: request_sock_TCP: Possible SYN flooding on port 5400. Sending cookies.  Check SNMP counters.",
        FLOOD,
        "9.649346",
        (5400, None, True),
    ),
    # coolsnowwolf/lede#5072: OpenWrt logread's facility.level
    (
        "kern.info kernel: [31617.809376] TCP: request_sock_TCP: Possible SYN flooding on port 5000. Sending cookies.  Check SNMP counters.",
        FLOOD,
        "31617.809376",
        (5000, None, True),
    ),
    # hanwckf/rt-n56u#279: a router's syslog without a host name, cookies off
    (
        "Feb 29 19:54:23 kernel: TCP: TCP: Possible SYN flooding on port 4646. Dropping request.  Check SNMP counters.",
        FLOOD,
        "Feb 29 19:54:23",
        (4646, None, False),
    ),
    # anitsh/til#635: /var/log/kern.log, the syslog time over dmesg's
    (
        "Jul 28 18:57:32 PC kernel: [538538.407269] TCP: request_sock_TCP: Possible SYN flooding on port 8000. Sending cookies.  Check SNMP counters.",
        FLOOD,
        "Jul 28 18:57:32",
        (8000, None, True),
    ),
    # this machine's own dmesg (kernel 6.18), another engineer's test
    (
        "[21689.952649] TCP: request_sock_TCP: Possible SYN flooding on port 127.0.0.1:5555. Sending cookies.",
        FLOOD,
        "21689.952649",
        (5555, "127.0.0.1", True),
    ),
    # a Linux performance course's conntrack lab, dmesg | tail
    (
        "[104235.156774] nf_conntrack: nf_conntrack: table full, dropping packet",
        CONNTRACK,
        "104235.156774",
        None,
    ),
    # LKML, 2.4.x (2001): syslog, two blanks before a one-digit day, a trailing blank
    (
        "Nov  6 02:39:55 doom kernel: ip_conntrack: table full, dropping packet. ",
        CONNTRACK,
        "Nov  6 02:39:55",
        None,
    ),
    # a cloud vendor's note on /var/log/messages
    (
        "Aug  4 17:25:37 static1 kernel: TCP: time wait bucket table overflow",
        TW,
        "Aug  4 17:25:37",
        None,
    ),
]


@pytest.mark.parametrize(
    ("line", "event", "stamp", "flood"), FROM_THE_KERNEL_SOURCE + FROM_REAL_PASTES
)
def test_each_kernel_form_is_read(
    line: str,
    event: KernelEvent,
    stamp: str | None,
    flood: tuple[int, str | None, bool] | None,
) -> None:
    read = match_kernel_line(line)
    assert isinstance(read, KernelLine)
    assert (read.event, read.stamp) == (event, stamp)
    if flood is not None:
        assert (read.port, read.address, read.cookies) == flood


@pytest.mark.parametrize(
    ("line", "count"),
    [
        ("[104243.800401] net_ratelimit: 3939 callbacks suppressed", 3939),
        ("kernel: printk: 2 messages suppressed.", 2),  # CentOS 5's form
    ],
)
def test_suppressed_messages_are_counted_apart(line: str, count: int) -> None:
    read = match_kernel_line(line)
    assert isinstance(read, Suppressed)
    assert read.count == count


@pytest.mark.parametrize(
    "line",
    [
        # netopeer2#1467: the reporter quoting the line in prose
        '"TCP: request_sock_TCPv6: Possible SYN flooding on port 830. Sending cookies. Check SNMP counters"',
        # a sentence about it, and a tuning guide's remark
        "We see TCP: too many orphaned sockets in dmesg every night",
        '后台日志输出"TCP: too many of orphaned sockets"。',
        # a script's comment (serverfault 637203's answer, kept in a gist)
        '# it will split out "kernel: TCP: too many of orphaned sockets"',
        # a program's own syslog line and an application log with the same words
        "Nov 16 14:55:04 lb haproxy[1234]: TCP: too many orphaned sockets",
        "2020-11-16 14:55:04,123 WARNING nf_conntrack: table full, dropping packet",
        # the command that looks for it
        "root@lb:~# dmesg | grep -i 'too many orphaned sockets'",
        "dmesg -T | grep 'SYN flooding'",
        # more after the message, and a port no kernel prints
        "TCP: out of memory -- consider tuning tcp_mem and the buffers",
        "TCP: Possible SYN flooding on port 99999. Sending cookies.",
    ],
)
def test_near_misses_are_not_read(line: str) -> None:
    assert match_kernel_line(line) is None


# --- in a paste, as findings ------------------------------------------------------------------


def found(snapshot: Snapshot, code: str) -> Finding:
    (finding,) = [finding for finding in diagnose(snapshot) if finding.code == code]
    return finding


def evidence(finding: Finding) -> dict[str, object]:
    return {item.name: item.value for item in finding.evidence}


def check_exit(tmp_path: Path, text: str) -> int:
    paste = tmp_path / "paste.txt"
    paste.write_text(text, encoding="utf-8")
    return CliRunner().invoke(main, ["check", "--from", str(paste)]).exit_code


HAPROXY_958 = (
    Path(__file__).resolve().parent.parent
    / "fixtures/realworld/threads"
    / "github-haproxy-958_ss-grep-wc-uptime-dmesg_closewait-482874-orphans.txt"
)


def test_haproxy_958_the_pile_is_the_cause_and_the_orphan_limit_its_consequence() -> None:
    snapshot = last(HAPROXY_958.read_text(encoding="utf-8"))
    (message,) = snapshot.kernel_log
    assert (message.event, message.count, message.line) == (ORPHANS, 6, 12)
    assert message.text == "[Mon Nov 16 14:55:04 2020] TCP: too many orphaned sockets"
    findings = diagnose(snapshot)
    top, second = findings[0], findings[1]
    # The CLOSE_WAIT count is as critical as the limit it led to, and listed first.
    assert (top.code, top.severity, top.blame, top.count) == (
        "close-wait-counted",
        Severity.CRITICAL,
        Blame.LOCAL_APPLICATION,
        482874,
    )
    assert "orphan limit was hit" in top.summary
    assert (second.code, second.severity, second.blame) == (
        "orphans-near-limit",
        Severity.CRITICAL,
        Blame.KERNEL_LIMIT,
    )
    assert evidence(second)["kernel_log"] == message.text
    assert "6 times in the paste, at Mon Nov 16 14:55:04 2020" in next(
        item.detail for item in second.evidence if item.name == "kernel_log" and item.detail
    )
    assert "consequence of that pile, not its cause" in second.summary
    assert any("still hit" in text for text in second.unchecked)


def test_without_the_log_line_the_host_wide_count_is_held_to_a_warning() -> None:
    text = HAPROXY_958.read_text(encoding="utf-8")
    without = "\n".join(line for line in text.splitlines() if "orphaned" not in line)
    finding = found(last(without), "close-wait-counted")
    assert finding.severity is Severity.WARNING


def test_a_log_alone_is_a_paste_with_a_finding(tmp_path: Path) -> None:
    text = "$ dmesg | tail -2\n[ 8512.001122] TCP: too many orphaned sockets\n[ 8513.300001] TCP: too many orphaned sockets\n"
    snapshot = last(text)
    assert snapshot.sockets == ()
    finding = found(snapshot, "orphans-near-limit")
    assert (finding.severity, finding.count) == (Severity.CRITICAL, 0)
    assert "between 8,512 s after boot and 8,513 s after boot" in finding.summary
    assert check_exit(tmp_path, text) == 2


def test_an_orphan_log_with_room_at_the_look_is_a_warning() -> None:
    text = """\
[ 8512.001122] TCP: too many orphaned sockets
$ cat /proc/net/sockstat
sockets: used 1204
TCP: inuse 310 orphan 12 tw 40 alloc 320 mem 20
$ sysctl net.ipv4.tcp_max_orphans
net.ipv4.tcp_max_orphans = 65536
"""
    finding = found(last(text), "orphans-near-limit")
    assert finding.severity is Severity.WARNING
    assert finding.count == 12
    assert "The paste's own count at its look is 12, 0% of the limit." in finding.summary


def test_the_old_line_is_the_orphans_where_sockstat_shows_them_over() -> None:
    # geekgao/articles#7: "Out of socket memory", sockstat's orphan 65738 over 65536
    text = """\
kernel: Out of socket memory
# cat /proc/net/sockstat
sockets: used 39845
TCP: inuse 125217 orphan 65738 tw 103758 alloc 121429 mem 22016
# sysctl net.ipv4.tcp_max_orphans net.ipv4.tcp_mem
net.ipv4.tcp_max_orphans = 65536
net.ipv4.tcp_mem = 21180	28243	42360
"""
    snapshot = last(text)
    finding = found(snapshot, "orphans-near-limit")
    assert finding.severity is Severity.CRITICAL
    assert "'Out of socket memory'" in finding.summary
    assert not [f for f in diagnose(snapshot) if f.code == "tcp-memory-pressure"]


def test_the_old_line_alone_says_it_cannot_tell_which_limit() -> None:
    finding = found(last("kernel: Out of socket memory\n"), "tcp-memory-pressure")
    assert finding.severity is Severity.CRITICAL
    assert any(text.startswith("which of the two limits") for text in finding.unchecked)


def test_tcp_mem_log_is_critical_and_a_warning_below_pressure_at_the_look() -> None:
    line = "[  179.636034] TCP: out of memory -- consider tuning tcp_mem\n"
    assert found(last(line), "tcp-memory-pressure").severity is Severity.CRITICAL
    room = (
        line
        + "TCP: inuse 310 orphan 12 tw 40 alloc 320 mem 2000\nnet.ipv4.tcp_mem = 90000 120000 180000\n"
    )
    finding = found(last(room), "tcp-memory-pressure")
    assert finding.severity is Severity.WARNING
    assert "At the paste's look TCP uses 2,000 pages" in finding.summary


SS_LTN = """\
root@web:~# ss -ltn
State  Recv-Q Send-Q Local Address:Port Peer Address:Port
LISTEN 129    128          0.0.0.0:8080      0.0.0.0:*
LISTEN 0      511             [::]:80           [::]:*
"""


def test_a_syn_flood_line_beside_a_full_accept_queue_is_that_queue_s_consequence() -> None:
    text = (
        SS_LTN
        + "[375852.589465] TCP: request_sock_TCP: Possible SYN flooding on port 8080. Sending cookies.  Check SNMP counters.\n"
    )
    finding = found(last(text), "syn-queue-full")
    assert (finding.severity, finding.blame, finding.subject.kind) == (
        Severity.WARNING,
        Blame.LOCAL_APPLICATION,
        SubjectKind.LISTENER,
    )
    assert str(finding.subject.address) == "0.0.0.0:8080"
    assert "application that does not accept, not of a flood" in finding.summary
    listen = [f for f in diagnose(last(text)) if f.code == "listen-queue-full"]
    assert listen and listen[0].severity is Severity.CRITICAL  # the cause, listed first


def test_a_dropping_request_line_on_a_listener_with_room_is_critical_and_names_it() -> None:
    text = (
        SS_LTN
        + "Sat Jul 11 10:00:00 2020 kern.info kernel: [31617.809376] TCP: request_sock_TCPv6: Possible SYN flooding on port [::]:80. Dropping request.\n"
    )
    finding = found(last(text), "syn-queue-full")
    assert (finding.severity, finding.blame) == (Severity.CRITICAL, Blame.REMOTE_PEER)
    assert str(finding.subject.address) == "[::]:80"
    assert "cookies were off" in finding.summary


def test_a_syn_flood_line_for_a_port_not_listed_names_the_port() -> None:
    text = "Feb 29 19:54:23 kernel: TCP: TCP: Possible SYN flooding on port 4646. Dropping request.  Check SNMP counters.\n"
    finding = found(last(text), "syn-queue-full")
    assert (finding.subject.kind, finding.subject.endpoint) == (SubjectKind.LISTENER, "port 4646")
    assert any("no listening socket there" in text for text in finding.unchecked)


def test_one_finding_per_listener_with_the_times_each_was_printed() -> None:
    text = """\
[375852.589465] TCP: request_sock_TCP: Possible SYN flooding on port 8080. Sending cookies.  Check SNMP counters.
[376429.759274] TCP: request_sock_TCP: Possible SYN flooding on port 25565. Sending cookies.  Check SNMP counters.
[376614.858572] TCP: request_sock_TCP: Possible SYN flooding on port 25565. Sending cookies.  Check SNMP counters.
"""
    findings = [f for f in diagnose(last(text)) if f.code == "syn-queue-full"]
    assert sorted((f.subject.endpoint or "", f.evidence[0].detail or "") for f in findings) == [
        (
            "port 25565",
            "the kernel's own line, 2 times in the paste, between 376,429 s after boot and "
            "376,614 s after boot, first on line 2: the listener's SYN queue was full; further "
            "SYNs were answered with SYN cookies",
        ),
        (
            "port 8080",
            "the kernel's own line, once in the paste, at 375,852 s after boot, first on line "
            "1: the listener's SYN queue was full; further SYNs were answered with SYN cookies",
        ),
    ]


def test_conntrack_log_with_the_suppressed_count() -> None:
    text = """\
$ dmesg | tail
[104235.156774] nf_conntrack: nf_conntrack: table full, dropping packet
[104243.800401] net_ratelimit: 3939 callbacks suppressed
[104243.800401] nf_conntrack: nf_conntrack: table full, dropping packet
[104262.962157] nf_conntrack: nf_conntrack: table full, dropping packet
"""
    finding = found(last(text), "conntrack-table-full")
    assert finding.severity is Severity.CRITICAL
    assert evidence(finding)["net_ratelimit_suppressed"] == 3939
    assert "3 times" in finding.summary


def test_time_wait_overflow_log_is_critical_and_a_warning_with_room_counted() -> None:
    line = "Aug  4 17:25:37 static1 kernel: TCP: time wait bucket table overflow\n"
    finding = found(last(line), "time-wait-bucket-limit")
    assert finding.severity is Severity.CRITICAL
    room = (
        line
        + "net.ipv4.tcp_max_tw_buckets = 65536\n$ netstat -n | awk '/^tcp/ {++S[$NF]} END {for(a in S) print a, S[a]}'\nTIME_WAIT 120\nESTABLISHED 40\n"
    )
    finding = found(last(room), "time-wait-bucket-limit")
    assert finding.severity is Severity.WARNING
    assert "the paste counts 120 (0%) at its look" in finding.summary


def test_the_kernel_log_survives_a_snapshot_file() -> None:
    snapshot = last(HAPROXY_958.read_text(encoding="utf-8"))
    again = snapshot_from_json(snapshot_to_json(snapshot), "saved")
    assert again.kernel_log == snapshot.kernel_log
    assert again == snapshot


def test_a_dropping_request_line_settles_tcp_syncookies_the_paste_does_not_show() -> None:
    # Found live (tests/test_live_kernel_log.py): the look's own full queue was judged with
    # the default tcp_syncookies 1 although the kernel's line beside it says it dropped.
    rows = "".join(
        f"SYN-RECV 0      0         127.0.0.1:5555    127.0.0.1:{40000 + n}\n" for n in range(9)
    )
    text = (
        "root@lab:~# ss -tan\nState    Recv-Q Send-Q Local Address:Port Peer Address:Port\n"
        "LISTEN   0      8         127.0.0.1:5555    0.0.0.0:*\n"
        + rows
        + "[21702.092338] TCP: request_sock_TCP: Possible SYN flooding on port 127.0.0.1:5555. Dropping request.\n"
    )
    finding = found(last(text), "syn-queue-full")
    assert (finding.severity, finding.count) == (Severity.CRITICAL, 9)
    assert evidence(finding)["tcp_syncookies"] == 0
    assert str(evidence(finding)["kernel_log"]).endswith("Dropping request.")


def test_a_logged_flood_is_shown_under_a_filter_on_its_listener_only(tmp_path: Path) -> None:
    # Found trying it: with no half-open row the finding was about no socket, so --port on
    # its own listener hid it and `check` said 0 where the whole host says 1.
    paste = tmp_path / "paste.txt"
    paste.write_text(
        SS_LTN.replace("129    128", "0      128")
        + "Jul 28 18:57:32 web kernel: [538538.407269] TCP: request_sock_TCP: Possible SYN flooding on port 8080. Sending cookies.  Check SNMP counters.\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    whole = runner.invoke(main, ["check", "--from", str(paste)])
    mine = runner.invoke(main, ["check", "--from", str(paste), "--port", "8080"])
    other = runner.invoke(main, ["check", "--from", str(paste), "--port", "80"])
    assert (whole.exit_code, mine.exit_code, other.exit_code) == (1, 1, 0)
    assert "code=syn-queue-full" in mine.stdout and "syn-queue-full" not in other.stdout


def test_a_port_alone_is_quoted_as_the_kernel_printed_it() -> None:
    text = "Feb 29 19:54:23 kernel: TCP: TCP: Possible SYN flooding on port 4646. Dropping request.  Check SNMP counters.\n"
    finding = found(last(text), "syn-queue-full")
    assert "'Possible SYN flooding on port 4646'" in finding.summary
    assert str(finding.subject.address) == "*:4646"


DATED = """\
$ date -u
Mon Nov 16 15:05:00 UTC 2020
$ ss -tan
State      Recv-Q Send-Q Local Address:Port  Peer Address:Port
LISTEN     0      128          0.0.0.0:80         0.0.0.0:*
FIN-WAIT-1 0      1           10.0.0.5:80        10.9.8.7:51234
$ journalctl -k -o short-iso | grep orphan
{log}
"""


def test_a_log_time_with_its_zone_is_placed_before_the_dated_capture() -> None:
    line = "2020-11-16T14:55:04+0000 lb kernel: TCP: too many orphaned sockets"
    snapshot = last(DATED.format(log=line))
    (message,) = snapshot.kernel_log
    assert message.seconds_before_capture == 596.0
    finding = found(snapshot, "orphans-near-limit")
    assert "(at 2020-11-16T14:55:04+0000, 10 min before the capture)" in finding.summary
    # Orphans-to-be in the listing are named beside it.
    assert evidence(finding)["closing_listed"] == 1
    assert "The listing shows 1 of them still closing" in finding.summary


def test_a_log_time_without_a_zone_is_not_placed() -> None:
    line = "Nov 16 14:55:04 lb kernel: TCP: too many orphaned sockets"
    (message,) = last(DATED.format(log=line)).kernel_log
    assert message.seconds_before_capture is None
    assert (
        "before the capture"
        not in found(last(DATED.format(log=line)), "orphans-near-limit").summary
    )
