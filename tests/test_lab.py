"""Every TCP state, created for real in private network namespaces (lab/netns_lab.py), must be
seen by tcphealth exactly as ``ss`` sees it -- state, counts, queues, owner -- and diagnosed with
the code and blame the diagnosis defines.

Needs root, ip (iproute2), nft (nftables) and ss; skipped with the reason where they are
missing. CI installs them (.ci/run), so there these tests run.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.diagnose.config import Thresholds
from tcphealth.model import Finding, OwnerSource, Snapshot, Socket, TcpState
from tcphealth.sources import collect_live, netlink
from tests.live_netns import lab_marks

if sys.platform.startswith("linux"):
    from lab.netns_lab import Lab, LabSocket, leftover_namespaces, missing_tools, running_lab

pytestmark = lab_marks()

# One socket of a state is enough to be reported in the lab (the defaults ask for more).
LAB_THRESHOLDS = Thresholds(
    close_wait_warning=1, syn_recv_warning=1, closing_warning=1, fin_wait2_held_warning=1
)
SOURCES = ["netlink", "procfs"]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    missing = missing_tools()
    if missing:
        pytest.skip(f"the lab needs {', '.join(missing)}")
    with running_lab() as built:
        wait_for_retransmits(built)
        yield built


def wait_for_retransmits(lab: Lab) -> None:
    """The rules ask for two retransmissions before calling a peer silent (SYN_SENT after
    ~3 s, FINs and data after a second or so); wait, bounded, until the kernel shows them."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        slow = [
            s
            for s in collect_live("netlink", netns=lab.a, with_processes=False).sockets
            if s.state in (TcpState.SYN_SENT, TcpState.FIN_WAIT1) and (s.retransmits or 0) < 3
        ]
        if not slow:
            return
        time.sleep(0.25)
    raise AssertionError(f"still fewer than 3 retransmissions: {slow}")


def snapshot_of(lab: Lab, namespace: str, source: str) -> Snapshot:
    if source == "netlink" and not netlink.available():
        pytest.skip("netlink sock_diag is not available")
    return collect_live(source, netns=namespace)


def find(snapshot: Snapshot, expected: LabSocket) -> Socket:
    matches = [
        s
        for s in snapshot.sockets
        if s.state is expected.state
        and str(s.local) == expected.local
        and (expected.state is TcpState.LISTEN or str(s.remote) == expected.remote)
    ]
    assert len(matches) == 1, f"{expected.role}: {len(matches)} matches for {expected}"
    return matches[0]


@pytest.mark.parametrize("source", SOURCES)
def test_state_counts_equal_ss_in_every_namespace(lab: Lab, source: str) -> None:
    for namespace in lab.namespaces:
        before = lab.counts(namespace)
        ours = Counter(s.state for s in snapshot_of(lab, namespace, source).sockets)
        after = lab.counts(namespace)
        assert before == after, f"{namespace} changed while we looked"
        assert ours == before, namespace


def test_every_state_is_present_over_both_families(lab: Lab) -> None:
    made = {(s.state, s.family) for s in lab.created}
    for family in ("ipv4", "ipv6"):
        for state in (
            TcpState.LISTEN,
            TcpState.ESTABLISHED,
            TcpState.SYN_SENT,
            TcpState.SYN_RECV,
            TcpState.FIN_WAIT1,
            TcpState.FIN_WAIT2,
            TcpState.CLOSE_WAIT,
            TcpState.LAST_ACK,
            TcpState.CLOSING,
            TcpState.TIME_WAIT,
        ):
            assert (state, family) in made, f"{state.value} over {family}"


@pytest.mark.parametrize("source", SOURCES)
def test_every_created_socket_with_queues_and_owner(lab: Lab, source: str) -> None:
    snapshots = {ns: snapshot_of(lab, ns, source) for ns in lab.namespaces}
    # Not yet accepted (inode 0) on a listener's port: credited to the listener's process.
    via_listener = {"unaccepted", "syn-recv"}
    for expected in lab.created:
        found = find(snapshots[expected.namespace], expected)
        if expected.recv_queue is not None:
            assert found.recv_queue == expected.recv_queue, expected.role
        if expected.send_queue is not None:
            assert found.send_queue == expected.send_queue, expected.role
        if expected.owner is not None:
            assert found.pids == (expected.owner,), expected.role
            assert found.owner_source is OwnerSource.FD, expected.role
        elif expected.role in via_listener:
            assert (found.pids, found.owner_source) == ((lab.pid,), OwnerSource.LISTENER)
        else:
            assert (found.pids, found.owner_source) == ((), OwnerSource.NONE), expected.role
            assert found.inode == 0, expected.role


def test_v4_mapped_peer_of_a_dual_stack_listener(lab: Lab) -> None:
    (server,) = [s for s in lab.created if s.role == "dual-stack-server"]
    found = find(snapshot_of(lab, lab.b, "netlink"), server)
    assert found.remote.ipv4_mapped is not None
    assert str(found.remote.ipv4_mapped) == "10.201.0.1"


def findings_in(lab: Lab, namespace: str) -> list[Finding]:
    return diagnose(snapshot_of(lab, namespace, "netlink"), LAB_THRESHOLDS)


def only(findings: list[Finding], code: str) -> list[Finding]:
    chosen = [f for f in findings if f.code == code]
    assert chosen, f"no {code} among {[f.code for f in findings]}"
    return chosen


def test_held_close_wait_blames_the_local_application(lab: Lab) -> None:
    (finding,) = only(findings_in(lab, lab.b), "close-wait-not-closed")
    assert finding.blame.value == "local-application"
    assert (finding.subject.pid, finding.count) == (lab.pid, 6)
    # The three receive-queue readings are told apart in the evidence: 2 of each, per family.
    kinds = {e.name: e.value for e in finding.evidence}
    assert (
        kinds["close-wait-not-closed"],
        kinds["close-wait-not-reading"],
        kinds["close-wait-unread-data"],
    ) == (2, 2, 2)


def test_syn_sent_to_a_dropping_peer_blames_the_remote_side(lab: Lab) -> None:
    findings = only(findings_in(lab, lab.a), "syn-sent-unanswered")
    assert {f.subject.endpoint for f in findings} == {"10.201.0.2:9", "[fd00:201::2]:9"}
    assert {f.blame.value for f in findings} == {"remote-peer"}


def test_the_non_accepting_listener_is_blamed_on_its_process(lab: Lab) -> None:
    findings = findings_in(lab, lab.c)
    full = only(findings, "listen-queue-full")
    assert {(f.severity.name, f.blame.value, f.subject.pid) for f in full} == {
        ("CRITICAL", "local-application", lab.pid)
    }
    assert findings[0].code == "listen-queue-full"  # the top finding
    waiting = only(findings, "syn-sent-to-full-listener")
    assert {f.blame.value for f in waiting} == {"local-application"}


def test_unacknowledged_fins_and_handshakes(lab: Lab) -> None:
    client_side, server_side = findings_in(lab, lab.a), findings_in(lab, lab.b)
    (fin_wait1,) = only(client_side, "fin-wait1-fin-unacknowledged")
    # Per family: the owned and the orphaned FIN_WAIT1, and the CLOSING socket's peer.
    assert (fin_wait1.count, fin_wait1.blame.value) == (6, "network")
    (held,) = only(client_side, "fin-wait2-held")
    assert (held.count, held.subject.pid, held.blame.value) == (4, lab.pid, "remote-peer")
    (last_ack,) = only(server_side, "last-ack-fin-unacknowledged")
    assert (last_ack.count, last_ack.blame.value) == (2, "network")
    syn_recv = only(server_side, "syn-recv-no-final-ack")
    assert {(f.count, f.blame.value, f.subject.pid) for f in syn_recv} == {
        (1, "remote-peer", lab.pid)
    }
    (closing,) = only(server_side, "closing-fin-unacknowledged")
    assert (closing.count, closing.blame.value) == (2, "network")
    unreachable = only(client_side, "established-peer-unreachable")
    assert {f.blame.value for f in unreachable} == {"network"}


def test_a_failing_lab_leaves_no_namespace_behind() -> None:
    if missing_tools():
        pytest.skip(f"the lab needs {', '.join(missing_tools())}")

    class Planned(Exception):
        pass

    names: list[str] = []
    with pytest.raises(Planned), running_lab(nets=()) as lab:
        names = list(lab.namespaces)
        assert len(names) == 3
        raise Planned
    assert names
    assert not set(names) & set(leftover_namespaces())
