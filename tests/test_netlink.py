"""The netlink sock_diag parser over a reply recorded from a real kernel
(fixtures/netlink/record.py), and over truncated and corrupted copies of it."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcphealth.model import TcpState
from tcphealth.sources.dump_relay import NLMSG_ERROR
from tcphealth.sources.netlink import (
    INET_DIAG_INFO,
    INET_DIAG_SHUTDOWN,
    INET_DIAG_SKMEMINFO,
    SOCK_DIAG_BY_FAMILY,
    TCP_INFO_FIELDS,
    TCP_INFO_STRUCT,
    Decoder,
    NetlinkError,
    parse_messages,
    parse_tcp_info,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "netlink"


@pytest.fixture(scope="module")
def recorded() -> tuple[bytes, dict[str, int]]:
    dump, setup = FIXTURES / "tcp4-dump.bin", FIXTURES / "tcp4-dump.json"
    assert dump.is_file() and setup.is_file(), "recorded netlink fixture missing"
    return dump.read_bytes(), json.loads(setup.read_text())


def test_recorded_reply_decodes_what_was_set_up(recorded: tuple[bytes, dict[str, int]]) -> None:
    data, setup = recorded
    sockets, done = parse_messages(data, "tcp4-dump.bin")
    assert done
    port = setup["listener_port"]
    (listener,) = [s for s in sockets if s.state is TcpState.LISTEN and s.local.port == port]
    # Only netlink knows the maximum backlog: listen(7).
    assert (listener.recv_queue, listener.listen_backlog) == (1, 7)
    assert listener.send_queue is None

    on_port = [s for s in sockets if s.local.port == port and s.state is not TcpState.LISTEN]
    reader = next(s for s in on_port if s.remote.port == setup["reader_peer_port"])
    assert (reader.state, reader.recv_queue, reader.send_queue) == (TcpState.ESTABLISHED, 100, 0)
    assert reader.tcp_info is not None and reader.tcp_info.rtt_us is not None

    close_wait = next(s for s in on_port if s.remote.port == setup["close_wait_peer_port"])
    assert (close_wait.state, close_wait.recv_queue, close_wait.shutdown) == (
        TcpState.CLOSE_WAIT,
        1,
        1,  # receive side shut by the peer's FIN
    )
    half_closer = next(s for s in sockets if s.local.port == setup["close_wait_peer_port"])
    assert (half_closer.state, half_closer.shutdown) == (TcpState.FIN_WAIT2, 2)

    unaccepted = [s for s in on_port if s.inode == 0]
    assert [s.state for s in unaccepted] == [TcpState.ESTABLISHED]
    assert all(s.cookie for s in sockets)
    assert len({s.cookie for s in sockets}) == len(sockets)


def test_every_truncation_is_an_error_or_an_unfinished_dump(
    recorded: tuple[bytes, dict[str, int]],
) -> None:
    data, _ = recorded
    for cut in range(0, len(data), 7):
        try:
            _, done = parse_messages(data[:cut], "cut")
        except NetlinkError:
            continue
        assert not done, f"a reply cut at {cut} bytes must not look complete"


def test_corrupted_lengths_are_errors(recorded: tuple[bytes, dict[str, int]]) -> None:
    data, _ = recorded
    too_long = struct.pack("=I", len(data) + 100) + data[4:]
    with pytest.raises(NetlinkError, match="does not fit"):
        parse_messages(too_long, "bad")
    too_short = struct.pack("=I", 8) + data[4:]
    with pytest.raises(NetlinkError):
        parse_messages(too_short, "bad")


def test_kernel_error_answer_is_named() -> None:
    error = struct.pack("=IHHII", 36, NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -1) + bytes(16)
    with pytest.raises(NetlinkError, match="EPERM"):
        parse_messages(error, "netlink")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_give_sockets_or_our_error(data: bytes) -> None:
    with contextlib.suppress(NetlinkError):
        parse_messages(data, "fuzz")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_flipped_bytes_in_a_real_reply(data: st.DataObject) -> None:
    original = (FIXTURES / "tcp4-dump.bin").read_bytes()
    position = data.draw(st.integers(0, len(original) - 1))
    value = data.draw(st.integers(0, 255))
    mutated = original[:position] + bytes([value]) + original[position + 1 :]
    with contextlib.suppress(NetlinkError):
        parse_messages(mutated, "mutated")


def _messages(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every inet_diag message body in a recorded reply."""
    spans = []
    offset = 0
    while offset < len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if kind == SOCK_DIAG_BY_FAMILY:
            spans.append((offset + 16, offset + length))
        offset += (length + 3) & ~3
    return spans


def test_learnt_layouts_decode_as_the_attribute_walk(
    recorded: tuple[bytes, dict[str, int]],
) -> None:
    data, _ = recorded
    view = memoryview(data)
    # Each message on its own, attribute by attribute, with every check.
    walked = [Decoder().message(view, start, end, "walk") for start, end in _messages(data)]
    # The whole reply through the fast path: one decoder learns each message length's layout
    # from the first such message and reads the others with one unpack each.
    shared = Decoder()
    fast, done = parse_messages(data, "fast", shared)
    assert done
    assert shared._layouts, "expected the recorded reply to teach a layout"
    assert len(walked) > len(shared._layouts)
    assert fast == walked
    assert [s.tcp_info for s in fast] == [s.tcp_info for s in walked]


def _framed(*bodies: bytes) -> bytes:
    """inet_diag message bodies as one netlink reply, each behind its nlmsghdr."""
    return b"".join(
        struct.pack("=IHHII", 16 + len(body), SOCK_DIAG_BY_FAMILY, 2, 1, 0) + body
        for body in bodies
    )


def test_a_time_wait_message_without_attributes_is_read_by_its_layout() -> None:
    # The kernel sends a TIME_WAIT socket as a bare inet_diag_msg: no attribute at all.
    body = struct.pack(
        "=BBBBHH16s16sIIIIIIII",
        2,  # AF_INET
        6,  # TIME_WAIT
        3,  # its timer
        0,
        socket.htons(80),
        socket.htons(40000),
        bytes([127, 0, 0, 1]) + bytes(12),
        bytes([127, 0, 0, 2]) + bytes(12),
        0,
        7,  # cookie, low half
        0,
        59_000,  # ms left
        0,
        0,
        0,
        0,  # no inode
    )
    decoder = Decoder()
    sockets, done = parse_messages(_framed(body, body), "tw", decoder)
    assert not done
    assert list(decoder._layouts) == [72]  # learnt from the first, used for the second
    assert sockets[0] == sockets[1]
    sock = sockets[1]
    assert (sock.state, str(sock.local), str(sock.remote)) == (
        TcpState.TIME_WAIT,
        "127.0.0.1:80",
        "127.0.0.2:40000",
    )
    assert (sock.timer_seconds, sock.cookie, sock.uid, sock.tcp_info) == (59.0, 7, None, None)


def test_a_message_unlike_its_learnt_layout_is_walked(
    recorded: tuple[bytes, dict[str, int]],
) -> None:
    data, _ = recorded
    start, end = next(
        (s, e)
        for s, e in _messages(data)
        if Decoder().message(memoryview(data), s, e, "x").shutdown
    )
    message = bytearray(data[start:end])
    # Same length, but the shutdown attribute's type changed to one we do not read.
    offset = 72
    while struct.unpack_from("=H", message, offset + 2)[0] != INET_DIAG_SHUTDOWN:
        offset += (struct.unpack_from("=H", message, offset)[0] + 3) & ~3
    changed_message = bytearray(message)
    struct.pack_into("=H", changed_message, offset + 2, 99)
    # The first message teaches the layout; the second has its length but not its attributes.
    decoder = Decoder()
    (learnt, changed), _ = parse_messages(
        _framed(bytes(message), bytes(changed_message)), "x", decoder
    )
    assert len(message) in decoder._layouts
    assert learnt.shutdown
    assert changed.shutdown is None
    walk = Decoder().message(memoryview(bytes(changed_message)), 0, len(changed_message), "walk")
    assert changed == walk


def _info_attribute(message: bytes | bytearray) -> int:
    """Where the INET_DIAG_INFO payload starts in one inet_diag message body."""
    offset = 72
    while struct.unpack_from("=H", message, offset + 2)[0] != INET_DIAG_INFO:
        offset += (struct.unpack_from("=H", message, offset)[0] + 3) & ~3
    return offset + 4


def test_the_tcp_info_table_is_the_kernels_layout() -> None:
    # include/uapi/linux/tcp.h: five u8 (state .. backoff), then the bit fields and one more u8,
    # then u32 from tcpi_rto on; tcpi_total_retrans is the 26th u32. Then four u64 (pacing
    # rates, bytes acked and received), six u32 (segments .. data_segs_out) and the u64
    # tcpi_delivery_rate: tcpi_busy_time, tcpi_rwnd_limited and tcpi_sndbuf_limited are the u64
    # at 168, 176 and 184 (offsetof() against this machine's <linux/tcp.h> says the same).
    assert TCP_INFO_STRUCT.format == "=2xBBB3xI12xI16xI4xII8xI28xI64xQQQ"
    assert TCP_INFO_STRUCT.size == 192
    assert {field.attribute for field in TCP_INFO_FIELDS} == {
        "retransmits",
        "probes",
        "backoff",
        "rto_us",
        "unacked",
        "last_data_sent_ms",
        "last_data_recv_ms",
        "last_ack_recv_ms",
        "rtt_us",
        "total_retrans",
        "busy_time_us",
        "rwnd_limited_us",
        "sndbuf_limited_us",
    }


def test_every_tcp_info_field_lands_in_the_attribute_its_table_row_names(
    recorded: tuple[bytes, dict[str, int]],
) -> None:
    # A value no other field has, at each field's offset: a decoder reading the fields in
    # another order than the table's puts one of them into the wrong attribute.
    data, _ = recorded
    start, end = next(
        (s, e)
        for s, e in _messages(data)
        if (sock := Decoder().message(memoryview(data), s, e, "x")).tcp_info is not None
        and sock.state is TcpState.ESTABLISHED
    )
    message = bytearray(data[start:end])
    info = _info_attribute(message)
    expected: dict[str, int] = {}
    for number, field in enumerate(TCP_INFO_FIELDS):
        value = 11 + number if field.c_type == "__u8" else 100_003 + 1000 * number
        struct.pack_into("=" + field.code, message, info + field.offset, value)
        expected[field.attribute] = value
    walked = Decoder().message(memoryview(bytes(message)), 0, len(message), "walk")
    decoder = Decoder()
    fast, _ = parse_messages(_framed(bytes(message), bytes(message)), "fast", decoder)
    assert len(decoder._layouts) == 1  # learnt from the first, used for the second
    alone = parse_tcp_info(memoryview(bytes(message))[info:])
    for decoded in (walked.tcp_info, fast[0].tcp_info, fast[1].tcp_info, alone):
        assert decoded is not None
        assert {name: getattr(decoded, name) for name in expected} == expected


def test_a_short_tcp_info_knows_the_fields_it_holds() -> None:
    buffer = bytearray(TCP_INFO_STRUCT.size)
    for number, field in enumerate(TCP_INFO_FIELDS):
        struct.pack_into("=" + field.code, buffer, field.offset, 1 + number)
    # An old kernel's struct ending after tcpi_last_data_recv (offset 52, 4 bytes).
    info = parse_tcp_info(memoryview(bytes(buffer[:56])))
    assert (info.retransmits, info.probes, info.backoff, info.rto_us) == (1, 2, 3, 4)
    assert (info.unacked, info.last_data_sent_ms, info.last_data_recv_ms) == (5, 6, 7)
    assert (info.last_ack_recv_ms, info.rtt_us, info.total_retrans) == (None, None, None)
    # Too short for the one-byte counters: nothing is known.
    assert parse_tcp_info(memoryview(bytes(buffer[:4]))) == type(info)()


def test_skmem_drops_are_read_by_the_walk_and_by_the_learnt_layout(
    recorded: tuple[bytes, dict[str, int]],
) -> None:
    # The recorded reply predates skmem: one of its ESTABLISHED messages with an SKMEMINFO
    # attribute appended, its nine u32 numbered so that reading the wrong one shows.
    data, _ = recorded
    start, end = next(
        (s, e)
        for s, e in _messages(data)
        if Decoder().message(memoryview(data), s, e, "x").state is TcpState.ESTABLISHED
    )
    skmem = struct.pack("=HH9I", 40, INET_DIAG_SKMEMINFO, *range(100, 109))
    body = data[start:end] + skmem
    walked = Decoder().message(memoryview(body), 0, len(body), "walk")
    decoder = Decoder()
    fast, _ = parse_messages(_framed(body, body), "fast", decoder)
    assert len(decoder._layouts) == 1  # learnt from the first, used for the second
    assert walked.drops == fast[0].drops == fast[1].drops == 108  # SK_MEMINFO_DROPS, the 9th
    # Without the attribute (an older request, a TIME_WAIT socket): unknown, not 0.
    (plain,) = parse_messages(_framed(data[start:end]), "plain")[0]
    assert plain.drops is None
    # A kernel's shorter skmem, without the drops: unknown too.
    short = data[start:end] + struct.pack("=HH8I", 36, INET_DIAG_SKMEMINFO, *range(8))
    (cut,) = parse_messages(_framed(short), "short")[0]
    assert cut.drops is None
