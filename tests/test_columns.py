"""The columnar decoding of the netlink dump (tcphealth.sources.columns) against the object
decoder (tcphealth.sources.netlink.Decoder): the same bytes give the same sockets, field by
field -- on the recorded reply, on a live dump of a scene made for it, and on the odd
messages the columns leave to the object decoder."""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tcphealth import columnar
from tcphealth.model import Family, OwnerSource, Socket, SocketDraft, TcpState
from tcphealth.sources import columns, dump_relay, netlink
from tcphealth.sources.netlink import (
    INET_DIAG_INFO,
    INET_DIAG_SHUTDOWN,
    SOCK_DIAG_BY_FAMILY,
    Decoder,
    NetlinkError,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "netlink"


def _finished(drafts: list[SocketDraft]) -> list[Socket]:
    return [draft.finish((), OwnerSource.UNKNOWN) for draft in drafts]


def _both_ways(chunks: list[bytes]) -> tuple[list[Socket], list[Socket]]:
    """The sockets of one family's reply, decoded by objects and by columns."""
    decoder = Decoder()
    by_objects: list[SocketDraft] = []
    for chunk in chunks:
        found, done = decoder.drafts(memoryview(chunk), "objects")
        by_objects.extend(found)
        if done:
            break
    decoded = columns.decode(chunks, "columns")
    assert decoded is not None, "expected every message to be one the columns read"
    table, done = decoded
    assert done
    return _finished(by_objects), _finished(columnar.sockets_at(table))


def test_the_recorded_reply_gives_the_same_sockets_as_the_object_decoder() -> None:
    data = (FIXTURES / "tcp4-dump.bin").read_bytes()
    setup = json.loads((FIXTURES / "tcp4-dump.json").read_text())
    by_objects, by_columns = _both_ways([data])
    assert by_columns == by_objects
    assert [s.tcp_info for s in by_columns] == [s.tcp_info for s in by_objects]
    assert [s.drops for s in by_columns] == [s.drops for s in by_objects]
    # The columns themselves hold what was set up (not only what the decoder says).
    decoded = columns.decode([data], "columns")
    assert decoded is not None
    table = decoded[0]
    listener = [
        i
        for i in range(len(table))
        if table.state[i] == 10 and table.sport[i] == setup["listener_port"]
    ]
    assert len(listener) == 1
    assert (int(table.rqueue[listener[0]]), int(table.wqueue[listener[0]])) == (1, 7)


def _spans(data: bytes) -> list[tuple[int, int]]:
    spans, offset = [], 0
    while offset < len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if kind == SOCK_DIAG_BY_FAMILY:
            spans.append((offset + 16, offset + length))
        offset += (length + 3) & ~3
    return spans


def _framed(*bodies: bytes) -> bytes:
    return b"".join(
        struct.pack("=IHHII", 16 + len(body), SOCK_DIAG_BY_FAMILY, 2, 1, 0) + body
        for body in bodies
    )


def _attribute_at(body: bytes | bytearray, kind: int) -> int:
    offset = 72
    while struct.unpack_from("=H", body, offset + 2)[0] != kind:
        offset += (struct.unpack_from("=H", body, offset)[0] + 3) & ~3
    return offset


def _full_messages() -> list[bytes]:
    """The recorded reply's message bodies that carry tcp_info and a shutdown byte."""
    data = (FIXTURES / "tcp4-dump.bin").read_bytes()
    bodies = [data[start:end] for start, end in _spans(data)]
    full = [
        body
        for body in bodies
        if Decoder().message(memoryview(body), 0, len(body), "x").shutdown is not None
        and Decoder().message(memoryview(body), 0, len(body), "x").tcp_info is not None
    ]
    assert full
    return full


def test_one_length_with_two_layouts_is_left_to_the_object_decoder() -> None:
    body = _full_messages()[0]
    changed = bytearray(body)
    struct.pack_into("=H", changed, _attribute_at(body, INET_DIAG_SHUTDOWN) + 2, 99)
    assert columns.decode([_framed(body, bytes(changed))], "x") is None
    # Each alone is read (the changed one with no shutdown byte), as the object decoder does.
    for one in (body, bytes(changed)):
        decoded = columns.decode([_framed(one)], "x")
        assert decoded is not None
        (by_columns,) = _finished(columnar.sockets_at(decoded[0]))
        assert by_columns == Decoder().message(memoryview(one), 0, len(one), "x")
    alone = columns.decode([_framed(bytes(changed))], "x")
    assert alone is not None
    assert columnar.sockets_at(alone[0])[0].shutdown is None


def test_a_short_tcp_info_is_left_to_the_object_decoder() -> None:
    body = bytearray(_full_messages()[0])
    at = _attribute_at(body, INET_DIAG_INFO)
    length = struct.unpack_from("=H", body, at)[0]
    # An older kernel's tcp_info, cut to 64 bytes: the attribute shrinks, the message too.
    cut = 4 + 64
    shorter = body[: at + cut] + body[at + ((length + 3) & ~3) :]
    struct.pack_into("=H", shorter, at, cut)
    assert columns.decode([_framed(bytes(shorter))], "x") is None
    # ...which the object decoder reads field by field.
    assert Decoder().message(memoryview(bytes(shorter)), 0, len(shorter), "x").tcp_info


def test_malformed_replies_are_the_object_decoders_errors() -> None:
    data = (FIXTURES / "tcp4-dump.bin").read_bytes()
    # Cut anywhere: the same error as the object decoder's, or the same sockets and no end.
    for cut in range(1, len(data), 97):
        head = data[:cut]
        try:
            expected: object = netlink.parse_messages(head, "x")
        except NetlinkError as failed:
            expected = str(failed)
        try:
            decoded = columns.decode([head], "x")
            assert decoded is not None
            got: object = (_finished(columnar.sockets_at(decoded[0])), decoded[1])
        except NetlinkError as failed:
            got = str(failed)
        assert got == expected, cut
    error = struct.pack("=IHHII", 20, dump_relay.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -1)
    with pytest.raises(NetlinkError, match="EPERM"):
        columns.decode([error], "x")
    body = bytearray(_full_messages()[0])
    body[0] = 7  # not an inet family
    with pytest.raises(NetlinkError, match="address family 7"):
        columns.decode([_framed(bytes(body))], "x")


@pytest.fixture
def live_scene() -> Iterator[dict[str, TcpState]]:
    """A listener with one connection left in its accept queue, an accepted connection with
    unread bytes, a CLOSE_WAIT and its FIN_WAIT2 peer, a TIME_WAIT, on loopback; the local
    end of each as text, with the state it must be in."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    address = listener.getsockname()
    busy_client = socket.create_connection(address)
    busy_server, _ = listener.accept()
    busy_client.sendall(b"x" * 1000)  # left unread: a receive queue
    closing = socket.create_connection(address)
    closed_by_peer, _ = listener.accept()
    closing_end = closing.getsockname()
    closing.close()  # -> FIN_WAIT2 here, CLOSE_WAIT on the accepted end
    short = socket.create_connection(address)
    short_server, _ = listener.accept()
    short_end = short.getsockname()
    short.close()
    short_server.close()  # the client closed first: its end goes to TIME_WAIT
    queued = socket.create_connection(address)  # never accepted
    held = [listener, busy_client, busy_server, closed_by_peer, queued]

    def text(end: tuple[str, int]) -> str:
        return f"{end[0]}:{end[1]}"

    expected = {
        text(address): TcpState.LISTEN,
        text(busy_client.getsockname()): TcpState.ESTABLISHED,
        text(closing_end): TcpState.FIN_WAIT2,
        text(short_end): TcpState.TIME_WAIT,
        text(queued.getsockname()): TcpState.ESTABLISHED,
    }
    try:
        deadline = time.monotonic() + 5
        while True:  # the closed ends pass through FIN_WAIT1 until the peer's ACK
            seen = {(str(d.local), d.state) for d in netlink._dump_both_families(True)}
            if set(expected.items()) <= seen:
                break
            assert time.monotonic() < deadline, "the scene never settled"
            time.sleep(0.01)
        yield expected
    finally:
        for sock in held:
            sock.close()


def _received(family: Family) -> list[bytes]:
    """One family's dump as the kernel sent it, each datagram copied."""
    request = netlink.build_request(netlink._address_family(family), 1, with_tcp_info=True)
    chunks = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, dump_relay.NETLINK_SOCK_DIAG) as channel:
        for chunk in dump_relay.receive(channel, request, netlink.RECEIVE_BUFFER, 10):
            chunks.append(bytes(chunk))
            if dump_relay.dump_ended(chunk):
                break
    return chunks


@pytest.mark.live
@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not netlink.available(),
    reason="needs netlink sock_diag",
)
def test_a_live_dump_gives_the_same_sockets_both_ways(live_scene: dict[str, TcpState]) -> None:
    for family in (Family.IPV4, Family.IPV6):
        chunks = _received(family)
        by_objects, by_columns = _both_ways(chunks)
        assert by_columns == by_objects
        assert [(s.tcp_info, s.drops) for s in by_columns] == [
            (s.tcp_info, s.drops) for s in by_objects
        ]
        if family is Family.IPV4:
            found = {(str(s.local), s.state): s for s in by_columns}
            assert set(live_scene.items()) <= set(found)
            listener = next(
                s
                for (end, state), s in found.items()
                if end in live_scene and state is TcpState.LISTEN
            )
            assert (listener.recv_queue, listener.listen_backlog) == (1, 8)
            busy = [s for s in by_columns if s.recv_queue == 1000 and str(s.local) in live_scene]
            assert len(busy) == 1 and busy[0].tcp_info is not None
            assert busy[0].state is TcpState.ESTABLISHED


def _walked(chunk: bytes, at_once: bool) -> tuple[bool, list[int], list[int]]:
    starts: list[columns.Positions] = []
    lengths: list[columns.Positions] = []
    if at_once:
        handled = columns._walk_at_once(memoryview(chunk), 100, starts, lengths)
    else:
        handled = not columns._walk(memoryview(chunk), "test", 100, starts, lengths)
    return handled, _flat(starts), _flat(lengths)


def _flat(parts: list[columns.Positions]) -> list[int]:
    return [int(value) for part in parts for value in part.tolist()]


@pytest.mark.live
@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not netlink.available(),
    reason="needs netlink sock_diag",
)
def test_a_datagram_is_walked_at_once_where_it_can_be(live_scene: dict[str, TcpState]) -> None:
    chunks = _received(Family.IPV4)
    at_once = [_walked(chunk, True) for chunk in chunks]
    by_step = [_walked(chunk, False) for chunk in chunks]
    # Each datagram of socket messages: the same messages found both ways. The one with
    # NLMSG_DONE is left to the per-message walk.
    for chunk, (handled, starts, lengths), expected in zip(chunks, at_once, by_step, strict=True):
        if dump_relay.dump_ended(memoryview(chunk)):
            assert not handled and not starts
        else:
            assert handled and (True, starts, lengths) == expected and starts
    assert any(handled for handled, _, _ in at_once)

    first = next(chunk for chunk, (handled, _, _) in zip(chunks, at_once, strict=True) if handled)
    (length,) = struct.unpack_from("=I", first, 0)
    if (length + 3) & ~3 < len(first):  # two messages or more: a body that looks like a header
        fake = bytearray(first)
        fake[32:48] = first[0:16]  # inside the first message's body: a second chain
        assert _walked(bytes(fake), True) == (False, [], [])
    # Stray bytes after the last message, a message cut short, an error: left to _walk.
    assert not _walked(first + b"\0" * 4, True)[0]
    assert not _walked(first[:-4], True)[0]
    error = struct.pack("=IHHIIi", 20, dump_relay.NLMSG_ERROR, 0, 1, 0, -1)
    assert not _walked(first + error, True)[0]


def test_ends_by_group_pairs_every_row_of_a_shared_key() -> None:
    # Runs as other_ends gives them: rows 10 and 11 share run 0 (one key, two rows: a
    # connection seen twice), row 12 is in no group; rows 20 and 21 are the other ends.
    import numpy as np

    from tcphealth.diagnose.shared import ends_by_group

    group_of = np.full(30, -1, dtype=np.intp)
    group_of[10], group_of[11] = 0, 1
    group, other = ends_by_group(
        group_of,
        np.array([10, 11, 12], dtype=np.intp),
        np.array([0, 0, 1], dtype=np.intp),
        np.array([20, 21], dtype=np.intp),
        np.array([0, 1], dtype=np.intp),
    )
    assert sorted(zip(group.tolist(), other.tolist(), strict=True)) == [(0, 20), (1, 20)]


def _messages(data: bytes) -> list[bytes]:
    """A reply's messages, each with its padding."""
    found, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("=I", data, offset)
        step = (length + 3) & ~3
        found.append(data[offset : offset + step])
        offset += step
    return found


def _recorded_in_datagrams(size: int) -> list[bytes]:
    """The recorded reply cut into datagrams of ``size`` messages each (the last holding
    NLMSG_DONE after its socket messages, as the kernel sends it)."""
    messages = _messages((FIXTURES / "tcp4-dump.bin").read_bytes())
    return [b"".join(messages[at : at + size]) for at in range(0, len(messages), size)]


def _columns_of(chunks: list[bytes]) -> list[Socket]:
    decoded = columns.decode(chunks, "columns")
    assert decoded is not None
    table, done = decoded
    assert done
    return _finished(columnar.sockets_at(table))


@pytest.mark.parametrize("batch", [columns.BATCH_BYTES, 1000, 400])
@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_the_datagrams_walked_together_give_what_one_datagram_gives(
    size: int, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of a few datagrams, or smaller than one (a datagram of seven messages is
    # 1,848 bytes at most here): each batch's columns gathered on its own, in turn.
    monkeypatch.setattr(columns, "BATCH_BYTES", batch)
    chunks = _recorded_in_datagrams(size)
    assert len(chunks) > 2
    whole = _columns_of([(FIXTURES / "tcp4-dump.bin").read_bytes()])
    assert len(whole) == 18
    by_objects, by_columns = _both_ways(chunks)
    assert by_columns == by_objects == whole
    assert [s.tcp_info for s in by_columns] == [s.tcp_info for s in whole]


def test_a_batch_not_sure_of_its_walk_is_walked_datagram_by_datagram() -> None:
    chunks = _recorded_in_datagrams(2)
    # Inside the second datagram's first body: a header like the reply's own (a second chain
    # the walk of the whole batch cannot tell from the real one).
    fake = bytearray(chunks[1])
    fake[32:48] = chunks[1][0:16]
    chunks[1] = bytes(fake)
    by_objects, by_columns = _both_ways(chunks)
    assert by_columns == by_objects
    assert len(by_columns) == 18


def test_the_dump_ends_at_its_done_wherever_it_sits() -> None:
    messages = _messages((FIXTURES / "tcp4-dump.bin").read_bytes())
    done = messages[-1]
    assert struct.unpack_from("=IH", done, 0) == (20, dump_relay.NLMSG_DONE)
    # NLMSG_DONE between two socket messages of one datagram (the kernel puts it last; a
    # reply that does not is still read to that end only), more datagrams after it.
    odd = b"".join([*messages[0:3], done, *messages[3:5]])
    chunks = [b"".join(messages[5:8]), odd, b"".join(messages[8:10])]
    by_objects, by_columns = _both_ways(chunks)
    assert by_columns == by_objects
    assert len(by_columns) == 6  # the first datagram's 3, the odd one's 3 before its end

    def given() -> Iterator[bytes]:
        yield b"".join(messages[0:4])
        yield b"".join([*messages[4:6], done])  # the dump's last datagram, as it comes
        raise AssertionError("read on after the datagram with NLMSG_DONE")

    decoded = columns.decode(given(), "columns")
    assert decoded is not None
    assert decoded[1] and len(decoded[0]) == 6


def _raw_columns(body: bytes) -> dict[str, int]:
    """One message's raw column values read field by field with struct (the reference for
    the columns' gather): the inet_diag_msg fields, and tcp_info's, the shutdown byte's and
    skmem's drops where the message carries them (else the columns' defaults)."""
    family, state, timer, retrans = struct.unpack_from("=4B", body, 0)
    sport, dport = struct.unpack_from(">2H", body, 4)
    expires, rqueue, wqueue, uid, inode = struct.unpack_from("=5I", body, 52)
    row: dict[str, int] = {
        "family": family,
        "state": state,
        "timer": timer,
        "retrans": retrans,
        "sport": sport,
        "dport": dport,
        "expires": expires,
        "rqueue": rqueue,
        "wqueue": wqueue,
        "uid": uid,
        "inode": inode,
        "cookie": struct.unpack_from("=Q", body, 44)[0],
        "src_high": struct.unpack_from(">Q", body, 8)[0],
        "src_low": struct.unpack_from(">Q", body, 16)[0],
        "dst_high": struct.unpack_from(">Q", body, 24)[0],
        "dst_low": struct.unpack_from(">Q", body, 32)[0],
        "has_info": 0,
        "shutdown": -1,
        "drops": -1,
        **dict.fromkeys(columnar.INFO_NAMES, 0),
    }
    offset = 72
    while offset + 4 <= len(body):
        length, kind = struct.unpack_from("=HH", body, offset)
        payload = offset + 4
        if kind == INET_DIAG_INFO:
            row["has_info"] = 1
            values = netlink.TCP_INFO_STRUCT.unpack_from(body, payload)
            row.update(zip(columnar.INFO_NAMES, values, strict=True))
        elif kind == INET_DIAG_SHUTDOWN:
            row["shutdown"] = body[payload]
        elif kind == netlink.INET_DIAG_SKMEMINFO:
            row["drops"] = struct.unpack_from("=I", body, payload + netlink._SKMEM_DROPS_AT)[0]
        offset += (length + 3) & ~3
    return row


def test_the_gather_reads_every_column_as_struct_does() -> None:
    # The recorded reply's messages of every length: in the kernel's order, one length only,
    # and reordered so that the lengths interleave (each length gathered at its own rows).
    data = (FIXTURES / "tcp4-dump.bin").read_bytes()
    bodies = [data[start:end] for start, end in _spans(data)]
    lengths = {len(body) for body in bodies}
    assert len(lengths) >= 2, "the recorded reply should hold messages of several lengths"
    by_length = sorted(bodies, key=len)
    interleaved = [
        body for pair in zip(by_length, reversed(by_length), strict=True) for body in pair
    ]
    for messages in (bodies, _full_messages(), interleaved):
        decoded = columns.decode([_framed(*messages)], "x")
        assert decoded is not None
        table = decoded[0]
        assert len(table) == len(messages)
        for name in columnar.COLUMN_NAMES:
            got = [int(value) for value in getattr(table, name).tolist()]
            assert got == [_raw_columns(body)[name] for body in messages], name
    # Each kind of message (one length each) carries something the others do not.
    assert {_raw_columns(body)["has_info"] for body in bodies} == {0, 1}


@pytest.mark.live
@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not netlink.available(),
    reason="needs netlink sock_diag",
)
def test_the_gather_reads_a_live_dump_as_struct_does(
    live_scene: dict[str, TcpState],
) -> None:
    # The live dump carries skmem's drops (the recorded reply does not).
    bodies = [chunk[start:end] for chunk in _received(Family.IPV4) for start, end in _spans(chunk)]
    decoded = columns.decode([_framed(*bodies)], "x")
    assert decoded is not None
    table = decoded[0]
    expected = [_raw_columns(body) for body in bodies]
    for name in columnar.COLUMN_NAMES:
        assert [int(value) for value in getattr(table, name).tolist()] == [
            row[name] for row in expected
        ], name
    assert any(row["drops"] >= 0 for row in expected)


def _lexsorted_runs_by_lexsort(
    keys: list[Any],
) -> tuple[Any, Any]:
    """The reference: np.lexsort over every key as given, runs where any key changes."""
    import numpy as np

    order = np.lexsort(keys)
    starts = np.zeros(len(order), dtype=np.bool_)
    starts[0] = True
    for key in keys:
        ordered = key[order]
        starts[1:] |= ordered[1:] != ordered[:-1]
    return order, starts


def test_lexsorted_runs_packs_keys_without_changing_the_order_or_the_runs() -> None:
    import numpy as np

    rng = np.random.default_rng(23)
    high = (rng.integers(0x7F000001, 0x7F000011, 500).astype(np.uint64)) << np.uint64(32)
    wide = rng.integers(0, 1 << 63, 500, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    cases: list[list[Any]] = [
        # Loopback connection keys as other_ends gives them (primary last): the addresses'
        # low halves all zero, IPv4's high halves 32 bits shifted up, a few ports.
        [
            rng.integers(20000, 20004, 500).astype(np.uint32),
            np.zeros(500, np.uint64),
            high[::-1].copy(),
            rng.integers(30000, 30008, 500).astype(np.uint32),
            np.zeros(500, np.uint64),
            high,
            np.full(500, 2, np.uint8),
        ],
        # Full-width keys that cannot share a word, mixed with narrow ones and families.
        [
            rng.integers(0, 3, 500).astype(np.uint32),
            wide,
            wide[::-1].copy(),
            rng.choice(np.array([2, 10], np.uint8), 500),
        ],
        # Signed keys with negatives (holder numbers, -1 for none), booleans, one constant.
        [
            rng.integers(-1, 5, 500).astype(np.int64),
            rng.integers(0, 2, 500).astype(np.bool_),
            np.full(500, 7, np.int32),
            rng.integers(-(1 << 62), 1 << 62, 500).astype(np.int64),
        ],
        # One key too wide for the row number beside it (a stable sort of it), and one narrow
        # enough (the row number in its low bits, one plain sort).
        [wide],
        [rng.integers(0, 1 << 40, 500, dtype=np.uint64)],
        # Every key constant; and one row.
        [np.full(50, 3, np.uint32), np.zeros(50, np.uint64)],
        [np.array([5], np.uint32), np.array([1], np.uint64)],
        # The full signed range: falls back to the lexsort itself.
        [np.array([-(1 << 63), (1 << 63) - 1, 0, -(1 << 63)], np.int64)],
    ]
    for keys in cases:
        order, starts = columnar.lexsorted_runs(keys)
        expected_order, expected_starts = _lexsorted_runs_by_lexsort(keys)
        assert order.tolist() == expected_order.tolist()
        assert starts.tolist() == expected_starts.tolist()
    # The loopback keys fit in one word: one stable sort instead of seven.
    packed = columnar._packed(cases[0])
    assert packed is not None and len(packed) == 1
    assert len(columnar._packed(cases[1]) or []) == 3
    assert columnar._packed([np.array([0.5, 1.0])]) is None
