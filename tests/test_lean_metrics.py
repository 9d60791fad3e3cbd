"""The metrics counted over columns (render.prometheus.table_families, with the owners of
sources.lean) against the metrics of the object path, on one live dump (tests/lean_scene.py):
the load generator's sockets (ESTABLISHED, CLOSE_WAIT, FIN_WAIT2, TIME_WAIT), an ESTABLISHED
connection with unread bytes, a full listener with connections waiting in its accept queue
(credited to the listener), and one socket made unseen (found again by the second look). Both
paths decode the same datagrams and read the same fd walk, so the ages match; the exposition
must be the same bytes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tcphealth.model import OwnerSource, TcpState
from tcphealth.pipeline import diagnose_samples
from tcphealth.render.prometheus import KernelFacts, exposition, families, table_families
from tcphealth.sources import lean, procfs
from tests import lean_scene

pytestmark = lean_scene.LIVE_NETLINK


@pytest.fixture
def generator(tmp_path: Path) -> Iterator[frozenset[int]]:
    with lean_scene.generator(tmp_path, 28760) as ports:
        yield ports


@pytest.fixture
def extra_scene() -> Iterator[lean_scene.Scene]:
    with lean_scene.extra_scene() as held:
        yield held


def test_the_columns_metrics_are_the_object_paths_metrics(
    generator: frozenset[int], extra_scene: lean_scene.Scene
) -> None:
    time.sleep(0.2)  # the closed ends of the generator's pairs reach FIN_WAIT2
    both = lean_scene.both_paths(extra_scene.busy_client)
    snapshot, table = both.snapshot, both.table
    report = diagnose_samples([snapshot], "-", grouped=False).report
    kernel = KernelFacts(snapshot.counters, snapshot.sysctls)
    by_objects = exposition(families(report, kernel))
    by_columns = exposition(table_families(report, table, kernel))

    assert by_columns.decode() == by_objects.decode()
    # The same holders as the object path, row by row, and the same processes to read.
    assert [table.groups[at] for at in table.holders.tolist()] == [s.pids for s in snapshot.sockets]
    assert both.unseen == snapshot.attribution.sockets_unseen
    assert [
        p.pid for p in lean.processes_of(table, procfs.scan_fds(lean_scene.PROC), lean_scene.PROC)
    ] == [p.pid for p in snapshot.processes]

    # The scene is what the comparison needs to mean something.
    sockets = snapshot.sockets
    assert sockets[both.unseen_at].owner_source is OwnerSource.FD  # found again
    credited = [s for s in sockets if s.owner_source is OwnerSource.LISTENER]
    full_port = extra_scene.full.getsockname()[1]
    assert len([s for s in credited if s.local.port == full_port]) >= 1
    states = {s.state for s in sockets if {s.local.port, s.remote.port} & generator}
    assert {TcpState.CLOSE_WAIT, TcpState.FIN_WAIT2, TcpState.TIME_WAIT} <= states
    text = by_columns.decode()
    assert 'tcphealth_socket_state_age_seconds_bucket{le="+Inf",state="FIN_WAIT2"}' in text
    assert "tcphealth_time_wait_destination_sockets{" in text
    assert f'tcphealth_listener_accept_queue{{endpoint="127.0.0.1:{full_port}"' in text
    assert int(np.count_nonzero(table.columns.rqueue == 3000)) >= 1
