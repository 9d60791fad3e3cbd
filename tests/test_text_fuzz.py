"""Whatever text arrives -- random bytes, real lines mutated, CRLF, NULs, very long lines --
every text parser returns snapshots or raises our InputError, never another exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcphealth.errors import InputError
from tcphealth.model import Snapshot
from tcphealth.sources.text import read_text

REALWORLD = Path(__file__).resolve().parent.parent / "fixtures" / "realworld"
FORMATS = ["auto", "proc", "ss", "netstat", "netstat-linux", "netstat-macos", "netstat-windows"]

# Real lines of every format, to mutate.
REAL_LINES = [
    "State      Recv-Q Send-Q        Local Address:Port          Peer Address:Port",
    'LISTEN     129    128                      :::30720                   :::*      users:(("kube-proxy",pid=1448,fd=21))',
    "CLOSE-WAIT 746    0       ::ffff:172.1.57.200:30720  ::ffff:172.31.3.170:39745",
    "FIN-WAIT-2 0      0      127.0.0.1:39836              127.0.0.1:12345               timer:(timewait,052ms,0)",
    "tcp    CLOSE-WAIT 1      0          100.96.253.46:36018     172.31.13.216:19000   -- x",
    "\t skmem:(r837,rb131072,t0) ts sack bbr rto:200 rtt:0.008/0.004 lastsnd:376 retrans:0/2",
    "Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name",
    "tcp        0    356 172.31.4.6:22           172.31.10.66:52562      ESTABLISHED 13091/sshd: deploye",
    "tcp        0      0 127.0.0.1:58278         127.0.0.1:46397         FIN_WAIT2   0          0          -                    timewait (59.65/0/0)",
    "Socket           Flowhash Proto Recv-Q Send-Q  Local Address      Foreign Address    (state)",
    "7fb03cb94bcb6475 4ca24b6e tcp4      31      0  192.168.1.221.5442 35.236.87.93.8081  CLOSE_WAIT",
    "7fb03cb946c1cbcd  3c023c0 tcp6       0      0  2600:1700:bab0:d.5 2607:f8b0:4003:c.9 ESTABLISHED",
    "  Proto  Local Address          Foreign Address        State           PID",
    "  TCP    [::]:135               [::]:0                 LISTENING       1712",
    " [svchost.exe]",
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
    "   3: 802AA8C0:D450 2104C798:01BB 08 00000000:00000052 02:00000A6F 00000000  1000        0 149098 2 ff 20 4 30 10 -1",
    "root@ip-172-1-57-200:~# ss -nltp| awk '{ if ($2 > 0) print $0 }'",
    "net.ipv4.tcp_max_tw_buckets = 65536",
    "TIME_WAIT 65547",
    "Max open files            1024                 4096                 files",
    "---",
]

line = st.one_of(
    st.sampled_from(REAL_LINES),
    st.text(max_size=80),
    st.text(alphabet=" \t\r\x00:.[]()*-,/=0123456789abcdefABCDEFtcpLISTENESTAB", max_size=120),
)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A real line with characters replaced, deleted or inserted, or cut anywhere."""
    text = draw(st.sampled_from(REAL_LINES))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["cut", "delete", "insert", "replace"]))
        noise = draw(st.sampled_from(["\x00", "\r", ":", ".", " ", "9" * 30, "-", "(", "é", "%"]))
        if action == "cut":
            text = text[:position]
        elif action == "delete":
            text = text[:position] + text[position + 1 :]
        elif action == "insert":
            text = text[:position] + noise + text[position:]
        else:
            text = text[:position] + noise + text[position + 1 :]
    return text


pastes = st.lists(st.one_of(line, mutated()), max_size=25).map("\n".join)
newlines = st.sampled_from(["\n", "\r\n"])


def read_any(text: str, input_format: str, strict: bool) -> None:
    try:
        snapshots = read_text(text, "fuzz.txt", input_format=input_format, strict=strict)
    except InputError:
        return
    assert snapshots and all(isinstance(s, Snapshot) for s in snapshots)


@pytest.mark.parametrize("input_format", FORMATS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=pastes, newline=newlines, strict=st.booleans())
def test_any_paste_gives_snapshots_or_input_error(
    input_format: str, text: str, newline: str, strict: bool
) -> None:
    read_any(text.replace("\n", newline), input_format, strict)


@settings(max_examples=40, deadline=None)
@given(head=st.sampled_from(REAL_LINES), filler=st.sampled_from(["x", "9", ":", " ", "\x00"]))
def test_very_long_lines(head: str, filler: str) -> None:
    read_any(f"{REAL_LINES[0]}\n{head}{filler * 200_000}\n{REAL_LINES[2]}", "auto", False)


@pytest.mark.parametrize("name", sorted(p.name for p in REALWORLD.glob("*.txt")))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_real_files_with_lines_dropped_or_mutated(name: str, data: st.DataObject) -> None:
    lines = (REALWORLD / name).read_bytes().decode("utf-8", errors="replace").splitlines()
    keep = data.draw(st.lists(st.booleans(), min_size=len(lines), max_size=len(lines)))
    chosen = [text for text, kept in zip(lines, keep, strict=True) if kept]
    if chosen:
        index = data.draw(st.integers(0, len(chosen) - 1))
        chosen[index] = chosen[index][: data.draw(st.integers(0, len(chosen[index])))]
    read_any("\n".join(chosen), "auto", data.draw(st.booleans()))
