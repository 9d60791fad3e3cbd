"""A live scene for the columnar path's differential tests (tests/test_lean_*.py): the
benchmark's load generator with a few thousand loopback sockets, a full listener, a pair
with unread bytes; one dump taken once, read by the object path and by the columns."""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import struct
import subprocess
import sys
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tcphealth.columnar import SocketTable
from tcphealth.model import Family, Snapshot, SocketDraft, TcpState
from tcphealth.sources import background_scan, columns, dump_relay, lean, netlink, procfs

SCENE_SOCKETS = 3000
PROC = Path("/proc")
# The marks of every test that reads this scene: live, and only where sock_diag answers.
LIVE_NETLINK = [
    pytest.mark.live,
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or not netlink.available(),
        reason="needs netlink sock_diag",
    ),
]


def received(family: Family) -> list[bytes]:
    """One family's dump as the kernel sent it, each datagram copied."""
    request = netlink.build_request(netlink._address_family(family), 1, with_tcp_info=True)
    chunks = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, dump_relay.NETLINK_SOCK_DIAG) as channel:
        for chunk in dump_relay.receive(channel, request, netlink.RECEIVE_BUFFER, 10):
            chunks.append(bytes(chunk))
            if dump_relay.dump_ended(memoryview(chunk)):
                break
    return chunks


def received_of_both() -> list[bytes]:
    """One dump of both families (the lean path's request) as the kernel sent it."""
    chunks = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, dump_relay.NETLINK_SOCK_DIAG) as channel:
        request = netlink.build_request_of_both(1, with_tcp_info=True)
        for chunk in dump_relay.receive(channel, request, netlink.RECEIVE_BUFFER, 10):
            chunks.append(bytes(chunk))
            if dump_relay.dump_ended(memoryview(chunk)):
                break
    return chunks


def per_family_of(chunks: list[bytes]) -> dict[Family, list[bytes]]:
    """A dump of both families as the two dumps one per family would give the same sockets:
    each family's messages, in the order they came, as SOCK_DIAG_BY_FAMILY's replies (one
    datagram per datagram of the dump that held any), each ending in NLMSG_DONE."""
    codes = {int(socket.AF_INET): Family.IPV4, int(socket.AF_INET6): Family.IPV6}
    out: dict[Family, list[bytes]] = {Family.IPV4: [], Family.IPV6: []}
    done = b""
    for chunk in chunks:
        mine: dict[Family, bytearray] = {Family.IPV4: bytearray(), Family.IPV6: bytearray()}
        offset = 0
        while offset < len(chunk):
            length, kind = struct.unpack_from("=IH", chunk, offset)
            step = (length + 3) & ~3
            message = bytearray(chunk[offset : offset + step])
            if kind == netlink.TCPDIAG_GETSOCK:
                struct.pack_into("=H", message, 4, netlink.SOCK_DIAG_BY_FAMILY)
                mine[codes[message[16]]] += message
            else:
                assert kind == dump_relay.NLMSG_DONE, kind
                done = bytes(message)
            offset += step
        for family, data in mine.items():
            if data:
                out[family].append(bytes(data))
    assert done, "the dump ended without NLMSG_DONE"
    for family in out:
        out[family].append(done)
    return out


@contextlib.contextmanager
def generator(
    tmp_path: Path, scene_port: int, sockets: int = SCENE_SOCKETS
) -> Iterator[frozenset[int]]:
    """The benchmark's load generator with a few thousand loopback sockets; its ports."""
    state_file = tmp_path / "loadgen.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.loadgen",
            f"--sockets={sockets}",
            "--processes=2",
            "--seconds=60",  # ends by itself should this test be killed outright
            f"--base-port={scene_port}",
            f"--state-file={state_file}",
            "--exit-with-parent",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + 60
            while True:
                assert time.monotonic() < deadline, "the load generator was not ready"
                if selector.select(timeout=0.5):
                    line = process.stdout.readline()
                    assert line, f"the load generator ended ({process.poll()})"
                    if line.startswith("READY"):
                        break
        yield frozenset(json.loads(state_file.read_text())["ports"])
    finally:
        if process.poll() is None:
            process.terminate()  # by pid: only the generator this test started
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


@dataclass
class Scene:
    """What the extra scene's tests name: the full listener, the client of the busy pair, and
    the address of the client that closed outright (its CLOSE_WAIT peer is made unseen)."""

    full: socket.socket
    busy_client: socket.socket
    orphan_peer: tuple[str, int]


@contextlib.contextmanager
def extra_scene() -> Iterator[Scene]:
    """A full listener (backlog 1, connections left in its queue), an ESTABLISHED pair with
    unread bytes; and the closing states the generator does not make, held by this process:
    a CLOSE_WAIT read to end-of-file and one with unread data (their clients half-closed, in
    FIN_WAIT2 here), the same from an IPv4 client of a dual-stack listener (where IPv6
    works), a CLOSE_WAIT whose client closed outright (an orphaned FIN_WAIT2; the
    captures make this one's holder unseen), and a connection its client closed before the
    listener accepted it (CLOSE_WAIT in the accept queue, an orphaned FIN_WAIT2)."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(1)
    queued = [socket.create_connection(full.getsockname()) for _ in range(2)]
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    busy_client = socket.create_connection(server.getsockname())
    busy_server, _ = server.accept()
    busy_client.sendall(b"y" * 3000)  # never read
    held = [full, *queued, server, busy_client, busy_server]
    keeper: subprocess.Popen[bytes] | None = None
    try:
        read_client = socket.create_connection(server.getsockname())
        read_server, _ = server.accept()
        unread_client = socket.create_connection(server.getsockname())
        unread_server, _ = server.accept()
        # Accepted from a listener closed at once: no listener on its port and no holder of
        # its peer, where the second look would find its holder again.
        with socket.socket() as lone:
            lone.bind(("127.0.0.1", 0))
            lone.listen()
            orphan_client = socket.create_connection(lone.getsockname())
            orphan_server, _ = lone.accept()
        held += [read_client, read_server, unread_client, unread_server]
        # Held by a child alone: the second look, which reads this process again for the
        # busy pair's sake, must not find it.
        keeper = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            pass_fds=[orphan_server.fileno()],
        )
        orphan_server.close()
        read_client.shutdown(socket.SHUT_WR)
        unread_client.sendall(b"z" * 500)  # never read
        unread_client.shutdown(socket.SHUT_WR)
        orphan_name = orphan_client.getsockname()
        orphan_client.close()
        read_server.settimeout(5)
        assert read_server.recv(10) == b""  # end-of-file read, the socket kept
        if socket.has_ipv6:
            # An IPv4 client of a dual-stack listener: its CLOSE_WAIT here is IPv6, the
            # addresses v4-mapped (counted as IPv4 destinations).
            dual = socket.socket(socket.AF_INET6)
            dual.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            dual.bind(("::", 0))
            dual.listen()
            held.append(dual)
            mapped_client = socket.create_connection(("127.0.0.1", dual.getsockname()[1]))
            mapped_server, _ = dual.accept()
            held += [mapped_client, mapped_server]
            mapped_client.shutdown(socket.SHUT_WR)
        unaccepting = socket.socket()
        unaccepting.bind(("127.0.0.1", 0))
        unaccepting.listen(4)
        held.append(unaccepting)
        socket.create_connection(unaccepting.getsockname()).close()
        yield Scene(full, busy_client, orphan_name)
    finally:
        for sock in held:
            sock.close()
        if keeper is not None:
            keeper.terminate()  # by pid: only the child this scene started
            keeper.wait(timeout=30)


@contextlib.contextmanager
def captured(tmp_path: Path, scene_port: int) -> Iterator[BothPaths]:
    """The load generator and the extra scene held while one dump is read both ways."""
    with generator(tmp_path, scene_port), extra_scene() as held:
        time.sleep(0.2)  # the closed ends of the generator's pairs reach FIN_WAIT2
        yield both_paths(held.busy_client, ownerless=held.orphan_peer)


@dataclass
class BothPaths:
    """One dump read both ways: the object path's snapshot and the columns' table (its rows
    in the snapshot's socket order), the unseen count the columns' second look left, and
    where the socket made unseen is."""

    snapshot: Snapshot
    table: SocketTable
    unseen: int
    unseen_at: int
    scan: procfs.FdScan


def both_paths(
    busy_client: socket.socket,
    attempts: int = 3,
    ownerless: tuple[str, int] | None = None,
    *,
    at_once: bool = False,
) -> BothPaths:
    """Dump once; the object path as netlink.collect runs it, and the columns with their
    owners (sources.lean), from the same datagrams and the same fd walk.

    Each path's second look reads the descriptors of live processes again, one after the
    other: on a machine where other processes open and close sockets meanwhile, the two can
    find a stranger's socket differently. Up to ``attempts`` captures are made until the two
    paths give every row the same holders (the tests then compare everything else); the
    last is returned either way, and the tests' own comparison of the holders fails on it.
    ``ownerless``: the address of a closed client whose CLOSE_WAIT peer is made unseen too
    (no second look finds it: nothing else connects to that client's port). ``at_once``:
    the dump is the lean path's one dump of both families; the object path reads its
    sockets as the two dumps one per family would give them (:func:`per_family_of`)."""
    for _ in range(attempts - 1):
        both = _both_paths_once(busy_client, ownerless, at_once)
        if [both.table.groups[at] for at in both.table.holders.tolist()] == [
            s.pids for s in both.snapshot.sockets
        ]:
            return both
    return _both_paths_once(busy_client, ownerless, at_once)


def _both_paths_once(
    busy_client: socket.socket, ownerless: tuple[str, int] | None = None, at_once: bool = False
) -> BothPaths:
    combined = received_of_both() if at_once else []
    chunks = (
        per_family_of(combined)
        if at_once
        else {family: received(family) for family in (Family.IPV4, Family.IPV6)}
    )
    scan = procfs.scan_fds(PROC)
    busy = "{}:{}".format(*busy_client.getsockname())

    # The object path, as netlink.collect runs it.
    drafts: list[SocketDraft] = []
    for family in (Family.IPV4, Family.IPV6):
        decoder = netlink.Decoder()
        for chunk in chunks[family]:
            found, done = decoder.drafts(memoryview(chunk), "objects")
            drafts.extend(found)
            if done:
                break
    inodes = array("Q", [d.inode or 0 for d in drafts])
    owners = background_scan.owners_from(scan, inodes)
    # Our own accepted end of the busy pair is made unseen (its holder "not read"): the
    # second look finds it again through the listener on its port, which we hold too.
    unseen_at = next(i for i, d in enumerate(drafts) if str(d.remote) == busy)
    assert owners.index[unseen_at]
    owners.index[unseen_at] = 0
    also_unseen = []
    if ownerless is not None:
        orphan = "{}:{}".format(*ownerless)
        also_unseen = [
            i
            for i, d in enumerate(drafts)
            if str(d.remote) == orphan and d.state is TcpState.CLOSE_WAIT
        ]
        assert len(also_unseen) == 1 and owners.index[also_unseen[0]]
        owners.index[also_unseen[0]] = 0
    sorted_owners = netlink._finish_all(drafts, owners)
    snapshot = procfs.assemble(
        drafts,  # type: ignore[arg-type]  # finished: Sockets now
        [],
        PROC,
        taken_at=time.time(),
        source="netlink",
        with_processes=True,
        scan=owners.scan,
        found=sorted_owners,
    )

    # The columns, from the same datagrams and the same walk.
    if at_once:
        decoded = columns.decode(combined, "columns")
        assert decoded is not None and decoded[1]
        table_columns = columns.in_family_order(decoded[0])
    else:
        parts = []
        for family in (Family.IPV4, Family.IPV6):
            decoded = columns.decode(chunks[family], "columns")
            assert decoded is not None and decoded[1]
            parts.append(decoded[0])
        table_columns = columns.joined(parts)
    assert len(table_columns) == len(drafts)
    owners_again = background_scan.owners_from(scan, array("Q", table_columns.inode.tolist()))
    owners_again.index[unseen_at] = 0
    for at in also_unseen:
        owners_again.index[at] = 0
    table, unseen = lean.table_of(table_columns, owners_again, PROC)
    return BothPaths(snapshot, table, unseen, unseen_at, scan)
