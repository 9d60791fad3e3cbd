"""CLOSE_WAIT in a client's way (issue #25, server side): the rule port_collision on built
snapshots. The kernel-as-oracle test is in test_live_limits.py."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.diagnose.rules.port_collision import (
    collision_chance,
    connections_until_likely,
    range_size,
)
from tcphealth.model import Blame, Finding, Severity, Snapshot, Socket, SubjectKind
from tcphealth.sources.text import read_text
from tests.builders import many, process, snapshot, sock

RANGE = 60999 - 32768 + 1


def found(snap: Snapshot, code: str) -> list[Finding]:
    return [finding for finding in diagnose(snap) if finding.code == code]


def evidence(finding: Finding) -> dict[str, Any]:
    return {item.name: item.value for item in finding.evidence}


def held_from(
    client: str, count: int, *, first: int = 32768, step: int = 7, pid: int = 900
) -> list[Socket]:
    """``count`` CLOSE_WAIT on 10.0.0.7:8443 from ``client``'s ports first, first+step, ..."""
    return many(
        count,
        lambda i: sock(
            "CLOSE_WAIT",
            "10.0.0.7:8443",
            f"{client}:{first + step * i}",
            pids=[pid],
            inode=5000 + i,
        ),
    )


def test_the_probability_is_the_birthday_style_one() -> None:
    assert range_size() == RANGE == 28232
    assert collision_chance(0, RANGE) == 0.0
    assert collision_chance(RANGE, RANGE) == 1.0
    assert collision_chance(2823, RANGE) == pytest.approx(2823 / RANGE)
    # Over 10 connections: 1 - (1 - p)^10.
    assert collision_chance(600, RANGE, 10) == pytest.approx(1 - (1 - 600 / RANGE) ** 10)
    assert connections_until_likely(600, RANGE) == 33
    assert connections_until_likely(0, RANGE) is None
    # The count given is the first at which the chance passes one half, not one before.
    for held in (283, 600, 2823, 14000):
        n = connections_until_likely(held, RANGE)
        assert n is not None
        assert collision_chance(held, RANGE, n) >= 0.5 > collision_chance(held, RANGE, n - 1)
    assert math.isclose(collision_chance(14116, RANGE), 0.5)


def test_many_close_wait_from_one_client_is_a_risk_with_its_numbers() -> None:
    snap = snapshot(
        held_from("10.0.7.40", 600),
        processes=[process(900, "api-server")],
        counters={"TcpExt.TCPChallengeACK": 41},
    )
    (finding,) = found(snap, "close-wait-collision-risk")
    assert finding.severity is Severity.WARNING
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.count == 600
    assert finding.subject.kind is SubjectKind.PEER
    assert finding.subject.pid == 900
    assert str(finding.subject.address.address) == "10.0.7.40"  # type: ignore[union-attr]
    facts = evidence(finding)
    assert facts["close_wait"] == 600
    assert facts["share_of_range"] == round(600 / RANGE, 4)
    assert facts["chance_per_connection"] == round(600 / RANGE, 4)
    assert facts["connections_until_likely"] == 33
    assert facts["TCPChallengeACK"] == 41
    assert "within 33 connections" in finding.summary
    assert "32768-60999 assumed" in finding.summary
    assert any("assumed" in item for item in finding.unchecked)
    # The counter is in the source: not listed as unchecked.
    assert not any("TCPChallengeACK is not in the source" in item for item in finding.unchecked)


def test_a_tenth_of_the_range_is_critical_and_unknown_counter_is_said() -> None:
    snap = snapshot(held_from("10.0.7.41", 2900, step=9), processes=[process(900, "api")])
    (finding,) = found(snap, "close-wait-collision-risk")
    assert finding.severity is Severity.CRITICAL
    assert "TCPChallengeACK" not in evidence(finding)
    assert any("TCPChallengeACK is not in the source" in item for item in finding.unchecked)


def test_below_one_percent_or_spread_over_clients_says_nothing() -> None:
    few = snapshot(held_from("10.0.7.40", 282))
    assert not found(few, "close-wait-collision-risk")
    assert found(snapshot(held_from("10.0.7.40", 283)), "close-wait-collision-risk")
    # 600 CLOSE_WAIT, but from 3 clients: 200 each, under 1% of each one's ports.
    spread = snapshot(
        held_from("10.0.7.1", 200),
        held_from("10.0.7.2", 200),
        held_from("10.0.7.3", 200),
    )
    assert not found(spread, "close-wait-collision-risk")


def test_ports_outside_the_assumed_range_do_not_count() -> None:
    # Client side CLOSE_WAIT toward a database port, or a client using low ports: the remote
    # ports are not in the client's likely ephemeral range.
    low = snapshot(held_from("10.0.7.40", 600, first=1024, step=1))
    assert not found(low, "close-wait-collision-risk")
    mixed = snapshot(held_from("10.0.7.40", 300), held_from("10.0.7.40", 50, first=2000))
    (finding,) = found(mixed, "close-wait-collision-risk")
    assert evidence(finding)["close_wait"] == 300
    assert evidence(finding)["outside_range"] == 50


def test_a_syn_sent_on_the_mirrored_tuple_of_a_close_wait_is_a_collision() -> None:
    # As in the lab paste: the server holds CLOSE_WAIT for 127.0.0.1:39836, and a new client
    # on this host opens from that same port.
    snap = snapshot(
        sock("LISTEN", "0.0.0.0:12345", pids=[11637]),
        sock("CLOSE_WAIT", "127.0.0.1:12345", "127.0.0.1:39836", pids=[11637], inode=7001),
        sock("SYN_SENT", "127.0.0.1:39836", "127.0.0.1:12345", pids=[14851], inode=7002),
        processes=[process(11637, "nc"), process(14851, "nc")],
    )
    (finding,) = found(snap, "close-wait-collision")
    assert finding.severity is Severity.WARNING
    assert finding.blame is Blame.LOCAL_APPLICATION
    assert finding.subject.pid == 11637
    assert evidence(finding)["opening"] == "SYN_SENT 127.0.0.1:39836 -> 127.0.0.1:12345"
    assert "127.0.0.1:12345 <- 127.0.0.1:39836" in finding.summary
    # A SYN_SENT from another port, or to another service, is no collision.
    other = snapshot(
        sock("CLOSE_WAIT", "127.0.0.1:12345", "127.0.0.1:39836", pids=[11637], inode=7001),
        sock("SYN_SENT", "127.0.0.1:39837", "127.0.0.1:12345", pids=[14851], inode=7002),
        sock("SYN_SENT", "127.0.0.1:39836", "127.0.0.1:12346", pids=[14851], inode=7003),
    )
    assert not found(other, "close-wait-collision")


def test_a_syn_recv_on_the_same_tuple_as_a_close_wait_is_a_collision() -> None:
    snap = snapshot(
        sock("LISTEN", "0.0.0.0:8080", pids=[700]),
        sock("CLOSE_WAIT", "10.0.0.7:8080", "10.0.9.9:40001", pids=[700], inode=7101),
        sock("SYN_RECV", "10.0.0.7:8080", "10.0.9.9:40001"),
        counters={"TcpExt.TCPChallengeACK": 3},
    )
    (finding,) = found(snap, "close-wait-collision")
    assert evidence(finding)["opening"] == "SYN_RECV 10.0.0.7:8080 -> 10.0.9.9:40001"
    assert evidence(finding)["TCPChallengeACK"] == 3


def test_close_wait_no_process_is_named_for_says_so() -> None:
    unnamed = many(
        400, lambda i: sock("CLOSE_WAIT", "10.0.0.7:80", f"10.1.1.1:{33000 + i}", inode=0)
    )
    (finding,) = found(snapshot(unnamed), "close-wait-collision-risk")
    assert finding.subject.pid is None
    assert finding.summary.startswith("A process the source does not name holds 400 ")


def test_a_pasted_netstat_s_gives_the_challenge_acks_as_evidence() -> None:
    rows = "\n".join(f"CLOSE-WAIT 1 0 10.0.0.7:8443 10.0.7.40:{32768 + 13 * i}" for i in range(290))
    paste = (
        "$ netstat -s | grep -i challenge\n"
        "    TCPChallengeACK: 57\n"
        "$ ss -tan\n"
        "State Recv-Q Send-Q Local Address:Port Peer Address:Port\n"
        f"{rows}\n"
    )
    (snap,) = read_text(paste, "paste")
    assert snap.counters["TcpExt.TCPChallengeACK"] == 57
    (finding,) = found(snap, "close-wait-collision-risk")
    assert evidence(finding)["close_wait"] == 290
    assert evidence(finding)["TCPChallengeACK"] == 57
    assert finding.subject.pid is None
