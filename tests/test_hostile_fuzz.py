"""The hostile-input fuzz of issue 26, a few seconds of it (``make fuzz`` runs it for minutes).

Seeded, so a failure here is a failure again with the same seed; bounded by time and by rounds,
so a slow machine runs fewer inputs, never longer. It fails on any internal error, any value
outside its range in a JSON report, and a peak RSS over the README's bound.
"""

from __future__ import annotations

import pytest

from tcphealth.diagnose import config as diagnose_config
from tests import hostile_fuzz

SEED = 26
SECONDS = 8.0


@pytest.fixture(autouse=True)
def _no_config_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagnose_config, "SEARCH_PATHS", (), raising=False)


def test_no_hostile_input_is_an_internal_error_or_an_impossible_value() -> None:
    outcome = hostile_fuzz.fuzz(SEED, SECONDS, max_rounds=3000)
    assert outcome.failures == []
    # Every kind of input was tried, and some of each outcome seen: a fuzz that refuses
    # everything (or accepts everything) tests nothing.
    assert set(outcome.by_kind) == {
        "snapshot",
        "series",
        "paste",
        "proc-table",
        "proc-tree",
        "thresholds",
    }
    assert outcome.by_exit[0] > 0
    assert outcome.by_exit[3] > 0


def test_the_oracle_sees_each_impossible_value() -> None:
    """The checks the fuzz relies on fail on what issue 26 found in reports."""
    document = {
        "sockets": [
            {"local": "10.0.2.2:1194859", "remote": "10.0.0.1:-1", "pids": [0, -1]},
            {"local": "1.2.3.4:80", "remote": "*:*", "uid": -1, "inode": -9223372036854775809},
            {"local": "1.2.3.4:80", "remote": "*:*", "recv_queue": -16777216},
        ],
        "processes": [{"pid": 0, "cmdline": ["x" * 10_000]}],
    }
    assert hostile_fuzz.out_of_range(document) == [
        "sockets[0].local = '10.0.2.2:1194859'",
        "sockets[0].remote = '10.0.0.1:-1'",
        "sockets[0].pids has 0",
        "sockets[0].pids has -1",
        "sockets[1].uid = -1",
        "sockets[1].inode = -9223372036854775809",
        "sockets[2].recv_queue = -16777216",
        "processes[0].pid = 0",
        "processes[0].cmdline is 10,000 characters",
    ]
