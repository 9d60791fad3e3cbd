"""The netlink dump received by a forked child and relayed through a pipe gives what receiving
it in this process gives; whatever goes wrong in the child is an error or a dump received
here, never a crash, a hang or a child left behind."""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import cast

import pytest

from tcphealth.model import Family, OwnerSource, Snapshot, Socket, SocketDraft, TcpState
from tcphealth.sources import background_scan, dump_relay, netlink, procfs
from tcphealth.sources import owners as owners_module
from tcphealth.sources.netlink import NetlinkError
from tests import lean_scene

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not netlink.available(),
    reason="needs netlink sock_diag",
)

_HEADER = struct.Struct("=IHHII")


def _message(kind: int, body: bytes = b"") -> bytes:
    return _HEADER.pack(_HEADER.size + len(body), kind, 0, 1, 0) + body


@pytest.fixture
def scene() -> Iterator[set[str]]:
    """A listener, an accepted connection, and one in CLOSE_WAIT, held by this process; the
    local endpoints of their sockets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    closing = socket.create_connection(listener.getsockname())
    closed_by_peer, _ = listener.accept()
    closing_end = closing.getsockname()
    closing.close()  # the accepted end, still held, goes to CLOSE_WAIT
    # The closed end passes through FIN_WAIT1 until the peer's ACK: wait for FIN_WAIT2, so
    # that two dumps in a row see the same states.
    closed = f"{closing_end[0]}:{closing_end[1]}"
    deadline = time.monotonic() + 5
    while not any(
        str(d.local) == closed and d.state is TcpState.FIN_WAIT2
        for d in netlink._dump_both_families(True)
    ):
        assert time.monotonic() < deadline, "the closed end never reached FIN_WAIT2"
        time.sleep(0.01)
    held = [listener, client, server, closed_by_peer]
    try:
        yield {
            f"{host}:{port}"
            for host, port in (listener.getsockname(), client.getsockname(), closing_end)
        }
    finally:
        for sock in held:
            sock.close()


def _requests() -> list[bytes]:
    return [
        netlink.build_request(netlink._address_family(family), 1, with_tcp_info=True)
        for family in netlink._FAMILIES
    ]


def _is_ours(sock: SocketDraft | Socket, scene: set[str]) -> bool:
    # Both ends: another connection may share an ephemeral port, toward another peer.
    return str(sock.local) in scene and (sock.state is TcpState.LISTEN or str(sock.remote) in scene)


def _ours(drafts: Sequence[SocketDraft], scene: set[str]) -> set[tuple[object, ...]]:
    """What a dump says of the scene's sockets, in fields that do not change between dumps."""
    return {
        (d.state, str(d.local), str(d.remote), d.inode, d.cookie, d.recv_queue, d.shutdown)
        for d in drafts
        if _is_ours(d, scene)
    }


def test_relayed_dump_is_the_dump_received_here(scene: set[str]) -> None:
    here = netlink._dump_both_families(True)
    with dump_relay.started(_requests(), buffer_size=netlink.RECEIVE_BUFFER, timeout=10) as relay:
        assert relay is not None and relay.pid is not None, "expected a relaying child here"
        child = relay.pid
        relayed = netlink._dump_both_families(True, relay)
    mine = _ours(relayed, scene)
    assert mine == _ours(here, scene)
    assert len(mine) == 5  # listener, both ends of the open pair, CLOSE_WAIT and FIN_WAIT2
    assert TcpState.CLOSE_WAIT in {state for state, *_ in mine}
    # The block reaped the child: it is no child of ours any more.
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)


def test_collect_names_this_process_alone(scene: set[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Both helpers hold copies of this process's descriptors for a while: neither may be
    named as an owner, nor listed as a process."""
    children: list[int] = []
    real_start = dump_relay._start

    def recording(
        requests: Sequence[bytes], buffer_size: int, timeout: float
    ) -> dump_relay.Relay | None:
        relay = real_start(requests, buffer_size, timeout)
        if relay is not None and relay.pid is not None:
            children.append(relay.pid)
        return relay

    monkeypatch.setattr(dump_relay, "_start", recording)
    snapshot = netlink.collect()
    assert len(children) == 1, "expected the dump to be relayed by a child"
    me = os.getpid()
    mine = [s for s in snapshot.sockets if _is_ours(s, scene)]
    held = [s for s in mine if s.state is not TcpState.FIN_WAIT2]
    (orphan,) = [s for s in mine if s.state is TcpState.FIN_WAIT2]  # we closed it
    assert len(held) == 4
    assert {s.pids for s in held} == {(me,)}
    assert (orphan.inode, orphan.pids) == (0, ())
    assert children[0] not in {process.pid for process in snapshot.processes}


def test_a_dump_received_in_place_has_no_child_and_the_same_sockets(
    scene: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tcphealth serve`` receives its dumps in place: no relaying child, and the same
    sockets and owners as a relayed collection."""
    relayed = netlink.collect()
    monkeypatch.setattr(dump_relay, "_relay_wanted", True)  # restored after the test
    dump_relay.received_in_place()
    assert not dump_relay.relay_wanted()
    with dump_relay.started(_requests(), buffer_size=1 << 16, timeout=5) as relay:
        assert relay is None
    forks: list[int] = []
    real_fork = os.fork

    def counted_fork() -> int:
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(os, "fork", counted_fork)
    here = netlink.collect()
    assert len(forks) == 1, "expected only the walking child, no relay"

    def seen(snapshot: Snapshot) -> set[tuple[object, ...]]:
        return {
            (s.state, str(s.local), str(s.remote), s.inode, s.cookie, s.pids)
            for s in snapshot.sockets
            if _is_ours(s, scene)
        }

    mine = seen(here)
    assert mine == seen(relayed)
    assert len(mine) == 5
    assert {pids for state, *_, pids in mine if state is not TcpState.FIN_WAIT2} == {(os.getpid(),)}


def test_a_child_lost_midway_means_the_dump_is_received_here(
    scene: set[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def dies_after_one_frame(
        requests: Sequence[bytes], write_end: int, buffer_size: int, timeout: float
    ) -> None:
        os.write(write_end, dump_relay._FRAME.pack(0, dump_relay._DATA, 100) + b"\0" * 10)
        os._exit(1)

    monkeypatch.setattr(dump_relay, "_child", dies_after_one_frame)
    with dump_relay.started(_requests(), buffer_size=netlink.RECEIVE_BUFFER, timeout=10) as relay:
        assert relay is not None
        with pytest.raises(dump_relay.RelayLost):
            list(relay.dump(0))
    with dump_relay.started(_requests(), buffer_size=netlink.RECEIVE_BUFFER, timeout=10) as relay:
        drafts = netlink._dump_both_families(True, relay)
    assert _ours(drafts, scene) == _ours(netlink._dump_both_families(True), scene)
    assert len(_ours(drafts, scene)) == 5


def test_the_kernels_error_answer_comes_through() -> None:
    # A request for address family 255: the kernel answers with an error message, which the
    # child forwards as the end of that dump and the decoder here names.
    request = bytearray(_requests()[0])
    request[16] = 255
    with dump_relay.started([bytes(request)], buffer_size=1 << 16, timeout=5) as relay:
        assert relay is not None
        with pytest.raises(NetlinkError, match="kernel answered error E"):
            netlink._decode_into([], Family.IPV4, netlink._relayed(relay, 0, Family.IPV4))


def test_a_request_never_answered_is_a_timeout_error() -> None:
    # Too short to be a netlink message: the kernel drops it and never answers.
    with dump_relay.started([b"\0\0\0"], buffer_size=1 << 16, timeout=0.3) as relay:
        assert relay is not None
        with pytest.raises(NetlinkError, match=r"no end of dump after 0\.3 s"):
            netlink._decode_into([], Family.IPV4, netlink._relayed(relay, 0, Family.IPV4))


def test_each_request_is_answered_after_a_failed_one() -> None:
    with dump_relay.started(
        [b"\0\0\0", _requests()[0]], buffer_size=netlink.RECEIVE_BUFFER, timeout=0.3
    ) as relay:
        assert relay is not None
        with pytest.raises(dump_relay.ReceiveFailed):
            list(relay.dump(0))
        drafts: list[SocketDraft] = []
        netlink._decode_into(drafts, Family.IPV4, netlink._relayed(relay, 1, Family.IPV4))
    assert drafts, "the IPv4 dump after the failed request came through"


def test_no_child_while_other_threads_run() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        with dump_relay.started(_requests(), buffer_size=1 << 16, timeout=5) as relay:
            assert relay is None
    finally:
        stop.set()
        other.join()


@pytest.mark.parametrize(
    ("datagram", "ended"),
    [
        (_message(netlink.SOCK_DIAG_BY_FAMILY, bytes(72)) * 3, False),
        (_message(netlink.SOCK_DIAG_BY_FAMILY, bytes(72)) + _message(3, bytes(4)), True),
        (_message(2, struct.pack("=i", -22) + bytes(16)), True),
        (struct.pack("=IHHII", 8, 20, 0, 1, 0) + bytes(80), True),  # length below a header
        (_message(netlink.SOCK_DIAG_BY_FAMILY, bytes(72)) + b"\1\2\3", True),  # stray bytes
        (b"", False),
    ],
    ids=["sockets", "done", "error", "broken-length", "stray-bytes", "empty"],
)
def test_where_a_dump_ends(datagram: bytes, ended: bool) -> None:
    assert dump_relay.dump_ended(memoryview(datagram)) is ended


# The load generator's scene for the differential test below: its own port block, apart from
# a benchmark run's (20000) and test_benchmark_loadgen's (28000).
_SCENE_PORT = 28400
_SCENE_SOCKETS = 3000
_STABLE = frozenset(
    {TcpState.LISTEN, TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.FIN_WAIT2}
)


def _stable_view(snapshot: Snapshot, ports: frozenset[int]) -> dict[int, tuple[object, ...]]:
    """The generator's sockets in the states that do not churn, by cookie, in every field a
    second dump must repeat (tcp_info's clocks move between two dumps; its RTO does not)."""
    view: dict[int, tuple[object, ...]] = {}
    for s in snapshot.sockets:
        if s.state not in _STABLE or not ({s.local.port, s.remote.port} & ports):
            continue
        assert s.cookie is not None and s.cookie not in view
        view[s.cookie] = (
            s.state,
            str(s.local),
            str(s.remote),
            s.inode,
            s.pids,
            s.owner_source,
            s.uid,
            s.recv_queue,
            s.send_queue,
            s.listen_backlog,
            s.shutdown,
            s.timer,
            s.tcp_info is None,
        )
    return view


@pytest.mark.live
@pytest.mark.benchmark
def test_the_load_generators_scene_is_the_same_received_in_place_or_relayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The differential test of serve's in-place dump: 3,000 loopback sockets of the benchmark's
    load generator, collected relayed (as a report does) and received in place (as serve
    does), give the same sockets with the same owners and fields."""
    with lean_scene.generator(tmp_path, _SCENE_PORT, _SCENE_SOCKETS) as ports:
        relayed = netlink.collect()
        monkeypatch.setattr(dump_relay, "_relay_wanted", True)  # restored after the test
        dump_relay.received_in_place()
        here = netlink.collect()
    before, after = _stable_view(relayed, ports), _stable_view(here, ports)
    assert after == before
    states = Counter(fields[0] for fields in after.values())
    # 3,000 less 10% TIME_WAIT, in four states, every accepted or connected socket owned.
    assert sum(states.values()) == _SCENE_SOCKETS - _SCENE_SOCKETS // 10
    assert states[TcpState.CLOSE_WAIT] == states[TcpState.FIN_WAIT2] > 0
    assert all(fields[4] for fields in after.values())


def test_the_owner_pass_finds_what_assemble_would_pass_over_every_socket_for() -> None:
    """netlink._finish_all notes the listeners, the sockets a listener may be credited with
    and the unseen ones as it sets each owner: the same lists as passes over every socket,
    and the same snapshot from procfs.assemble either way. A live scene: a listener, an
    accepted connection, one still in the accept queue (no descriptor: credited to the
    listener), a half-closed pair; and one socket made unseen by its walk's answer."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    address = listener.getsockname()
    accepted_client = socket.create_connection(address)
    accepted, _ = listener.accept()
    waiting = socket.create_connection(address)
    closer = socket.create_connection(address)
    # The queue is first in, first out: this accepts `waiting`, and `closer` stays queued,
    # never accepted (no descriptor: credited to the listener) -- in CLOSE_WAIT once it closes.
    waiting_peer, _ = listener.accept()
    queued = "{}:{}".format(*closer.getsockname()[:2])
    closer.close()
    waiting_peer.close()  # `waiting` gets the FIN: CLOSE_WAIT on the client's side
    held = [listener, accepted_client, accepted, waiting]
    try:
        proc = Path("/proc")

        def finished() -> tuple[list[Socket], object, procfs.FdScan]:
            drafts = netlink._dump_both_families(True)
            scan = procfs.scan_fds(proc)
            inodes = array("Q", [d.inode or 0 for d in drafts])
            owners = background_scan.owners_from(scan, inodes)
            mine = f"{address[0]}:{address[1]}"
            # One of ours is made unseen: its descriptor's holder "not read".
            index = owners.index
            unseen_at = next(
                i for i, d in enumerate(drafts) if str(d.remote) == mine and d.inode and index[i]
            )
            index[unseen_at] = 0
            sorted_owners = netlink._finish_all(drafts, owners)
            return cast(list[Socket], drafts), sorted_owners, owners.scan

        sockets, found, scan = finished()
        assert isinstance(found, owners_module.Sorted)
        assert found.listeners == [s for s in sockets if s.state is TcpState.LISTEN]
        assert found.unaccepted == [
            i
            for i, s in enumerate(sockets)
            if s.owner_source is OwnerSource.NONE
            and s.state in owners_module.UNACCEPTED_STATES
            and not s.inode
        ]
        assert found.unseen == [s for s in sockets if s.owner_source is OwnerSource.UNSEEN]
        assert found.unaccepted and found.unseen  # the scene has both
        whole = procfs.assemble(
            list(sockets), [], proc, taken_at=0.0, source="t", with_processes=True, scan=scan
        )
        noted = procfs.assemble(
            list(sockets),
            [],
            proc,
            taken_at=0.0,
            source="t",
            with_processes=True,
            scan=scan,
            found=found,
        )
        assert noted.sockets == whole.sockets
        assert noted.attribution == whole.attribution
        assert noted.processes == whole.processes
        # Of ours, only the connection never accepted is credited to the listener. (Other
        # processes on this host may have connections waiting in their own listeners' queues.)
        mine = f"{address[0]}:{address[1]}"
        credited = [
            str(s.remote)
            for s in noted.sockets
            if s.owner_source is OwnerSource.LISTENER and str(s.local) == mine
        ]
        assert credited == [queued]
    finally:
        for sock in held:
            sock.close()
