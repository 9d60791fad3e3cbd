"""The lean path of `tcphealth serve` as a whole against the object path, on one live dump
(tests/lean_scene.py): the snapshot with only its non-bulk sockets as objects, the table,
the diagnosis with the rules' table checks, the report and the metrics counted over the
columns -- the same exposition, byte for byte, as the full report's metrics of the whole
snapshot; ESTABLISHED and TIME_WAIT sockets made objects only where a finding asks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from tcphealth import exporter
from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.model import TcpState
from tcphealth.render.prometheus import exposition
from tcphealth.sources import lean
from tests import lean_scene

pytestmark = lean_scene.LIVE_NETLINK


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lean_scene.BothPaths]:
    with lean_scene.captured(tmp_path_factory.mktemp("lean"), 28960) as both:
        yield both


# The defaults, and thresholds low enough that every rule with a table check finds
# something in a few thousand loopback sockets.
_LOW = dataclasses.replace(
    Thresholds(),
    ports_warning_ratio=0.001,
    ports_critical_ratio=0.02,
    time_wait_ports_warning_ratio=0.0001,
    time_wait_ports_critical_ratio=0.002,
    established_idle_seconds=0,
    established_recv_queue_bytes=2000,
    close_wait_warning=50,
    close_wait_leak_seconds=0,
    close_wait_unread_warning=1,
    fin_wait2_held_warning=50,
    fin_wait2_orphan_warning=1,
    stuck_seconds=0,
)


@pytest.mark.parametrize("thresholds", [Thresholds(), _LOW], ids=["defaults", "low"])
def test_the_lean_exposition_is_the_full_one(
    both: lean_scene.BothPaths, thresholds: Thresholds, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = exposition(exporter.report_families([both.snapshot], thresholds=thresholds))

    made: list[TcpState] = []
    materialise = SnapshotIndex._materialise

    def noted(index: SnapshotIndex, state: TcpState) -> None:
        made.append(state)
        materialise(index, state)

    monkeypatch.setattr(SnapshotIndex, "_materialise", noted)
    snapshot = lean.snapshot_of(
        both.table, both.scan, both.unseen, [], lean_scene.PROC, both.snapshot.host.taken_at
    )
    # Only the sockets outside ESTABLISHED, TIME_WAIT, CLOSE_WAIT and FIN_WAIT2 are objects.
    assert {s.state for s in snapshot.sockets}.isdisjoint(
        {TcpState.ESTABLISHED, TcpState.TIME_WAIT, TcpState.CLOSE_WAIT, TcpState.FIN_WAIT2}
    )
    assert len(snapshot.sockets) < len(both.snapshot.sockets) // 2
    lean_families = exporter.table_families_of(
        snapshot, both.table, lazy=lean.BULK_CODES, thresholds=thresholds
    )
    assert exposition(lean_families).decode() == full.decode()
    # A bulk state is made objects at most once, and only for a rule without a table check
    # that asks for its sockets: at the low thresholds none does (the local peers a finding
    # names are found over the columns). At the defaults it depends on the rest of this
    # shared host's sockets.
    assert len(made) == len(set(made))
    if thresholds is _LOW:
        assert made == []

    text = full.decode()
    assert "tcphealth_finding_sockets{" in text
    if thresholds is _LOW:
        for code in (
            "ephemeral-ports-exhausting",
            "time-wait-ports-exhausting",
            "established-idle-no-keepalive",
            "established-not-reading",
            "close-wait-not-reading",
            "close-wait-unread-data",
            "close-wait-age-decides",
            "fin-wait2-held",
            "fin-wait2-age-decides",
            "fin-wait2-orphans",
        ):
            assert f'code="{code}"' in text
