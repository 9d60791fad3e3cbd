"""The metrics counted over columns (render.prometheus.table_families, with the owners of
sources.lean) against the metrics of the object path, on one live dump: the load generator's
sockets (ESTABLISHED, CLOSE_WAIT, FIN_WAIT2, TIME_WAIT), an ESTABLISHED connection with
unread bytes, a full listener with connections waiting in its accept queue (credited to the
listener), and one socket made unseen (found again by the second look). Both paths decode
the same datagrams and read the same fd walk, so the ages match; the exposition must be the
same bytes."""

from __future__ import annotations

import json
import selectors
import socket
import subprocess
import sys
import time
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tcphealth.model import Family, OwnerSource, SocketDraft, TcpState
from tcphealth.pipeline import diagnose_samples
from tcphealth.render.prometheus import KernelFacts, exposition, families, table_families
from tcphealth.sources import background_scan, columns, dump_relay, lean, netlink, procfs

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not sys.platform.startswith("linux") or not netlink.available(),
        reason="needs netlink sock_diag",
    ),
]

_SCENE_SOCKETS = 3000
_SCENE_PORT = 28760
PROC = Path("/proc")


def _received(family: Family) -> list[bytes]:
    """One family's dump as the kernel sent it, each datagram copied."""
    request = netlink.build_request(netlink._address_family(family), 1, with_tcp_info=True)
    chunks = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, dump_relay.NETLINK_SOCK_DIAG) as channel:
        for chunk in dump_relay.receive(channel, request, netlink.RECEIVE_BUFFER, 10):
            chunks.append(bytes(chunk))
            if dump_relay.dump_ended(memoryview(chunk)):
                break
    return chunks


@pytest.fixture
def generator(tmp_path: Path) -> Iterator[frozenset[int]]:
    """The benchmark's load generator with a few thousand loopback sockets; its ports."""
    state_file = tmp_path / "loadgen.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.loadgen",
            f"--sockets={_SCENE_SOCKETS}",
            "--processes=2",
            "--seconds=60",  # ends by itself should this test be killed outright
            f"--base-port={_SCENE_PORT}",
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


@pytest.fixture
def extra_scene() -> Iterator[dict[str, socket.socket]]:
    """A full listener (backlog 1, connections left in its queue), an ESTABLISHED pair with
    unread bytes."""
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
    try:
        yield {"full": full, "busy_client": busy_client}
    finally:
        for sock in held:
            sock.close()


def test_the_columns_metrics_are_the_object_paths_metrics(
    generator: frozenset[int], extra_scene: dict[str, socket.socket]
) -> None:
    time.sleep(0.2)  # the closed ends of the generator's pairs reach FIN_WAIT2
    chunks = {family: _received(family) for family in (Family.IPV4, Family.IPV6)}
    scan = procfs.scan_fds(PROC)
    busy = "{}:{}".format(*extra_scene["busy_client"].getsockname())

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
    report = diagnose_samples([snapshot], "-", grouped=False).report
    kernel = KernelFacts(snapshot.counters, snapshot.sysctls)
    by_objects = exposition(families(report, kernel))

    # The columns, from the same datagrams and the same walk.
    parts = []
    for family in (Family.IPV4, Family.IPV6):
        decoded = columns.decode(chunks[family], "columns")
        assert decoded is not None and decoded[1]
        parts.append(decoded[0])
    table_columns = columns.joined(parts)
    assert len(table_columns) == len(drafts)
    owners_again = background_scan.owners_from(scan, array("Q", table_columns.inode.tolist()))
    owners_again.index[unseen_at] = 0
    table, unseen = lean.table_of(table_columns, owners_again, PROC)
    by_columns = exposition(table_families(report, table, kernel))

    assert by_columns.decode() == by_objects.decode()
    # The same holders as the object path, row by row, and the same processes to read.
    assert [table.groups[at] for at in table.holders.tolist()] == [s.pids for s in snapshot.sockets]
    assert unseen == snapshot.attribution.sockets_unseen
    assert [p.pid for p in lean.processes_of(table, scan, PROC)] == [
        p.pid for p in snapshot.processes
    ]

    # The scene is what the comparison needs to mean something.
    sockets = snapshot.sockets
    assert sockets[unseen_at].owner_source is OwnerSource.FD  # found again
    credited = [s for s in sockets if s.owner_source is OwnerSource.LISTENER]
    full_port = extra_scene["full"].getsockname()[1]
    assert len([s for s in credited if s.local.port == full_port]) >= 1
    states = {s.state for s in sockets if {s.local.port, s.remote.port} & generator}
    assert {TcpState.CLOSE_WAIT, TcpState.FIN_WAIT2, TcpState.TIME_WAIT} <= states
    text = by_columns.decode()
    assert 'tcphealth_socket_state_age_seconds_bucket{le="+Inf",state="FIN_WAIT2"}' in text
    assert "tcphealth_time_wait_destination_sockets{" in text
    assert f'tcphealth_listener_accept_queue{{endpoint="127.0.0.1:{full_port}"' in text
    assert int(np.count_nonzero(table_columns.rqueue == 3000)) >= 1
