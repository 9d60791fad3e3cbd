"""peer-path-losing: one peer's connections resend in the handshake and in the close.

The shape is moooofly-lls' sentry-frontend samples (issue #22, session 15 held out): `ss -o`
printed once a second with `---` between the samples, one peer's SYN-ACKs resent on three
connections, one of which later waits in LAST-ACK with its FIN resent four times."""

from __future__ import annotations

from tcphealth.diagnose import diagnose
from tcphealth.model import Blame, Finding, Severity, Snapshot, TcpState
from tcphealth.sources import latest_of
from tcphealth.sources.text.paste import read_paste

_LISTEN = (
    "LISTEN     0      128          *:443                      *:*                   "
    'users:(("nginx",pid=31875,fd=7))'
)
_PEER = "222.93.138.66"


def _row(state: str, port: int, timer: str, peer: str = _PEER, queues: str = "0      0") -> str:
    local = "172.31.12.235:443"
    return f"{state:<10} {queues}      {local}                {peer}:{port}               {timer}"


def _paste(*samples: list[str]) -> Snapshot:
    text = "".join("---\n" + "\n".join([_LISTEN, *rows]) + "\n" for rows in samples)
    return latest_of("paste", read_paste(text.splitlines(), "paste"))


def _losing(snapshot: Snapshot) -> list[Finding]:
    return [f for f in diagnose(snapshot) if f.code == "peer-path-losing"]


_HANDSHAKES = [
    [
        _row("SYN-RECV", 18536, "timer:(on,1.808ms,2)"),
        _row("SYN-RECV", 18537, "timer:(on,976ms,1)"),
    ],
    [_row("SYN-RECV", 18542, "timer:(on,1.816ms,3)")],
    [],
]
_LAST_ACK = _row("LAST-ACK", 18542, "timer:(on,17sec,4)", queues="1      1")


def test_resends_to_one_peer_in_the_handshake_and_the_close_over_the_samples_warn() -> None:
    snapshot = _paste(*_HANDSHAKES, [_LAST_ACK])
    assert len(snapshot.earlier_listings) == 3
    (found,) = _losing(snapshot)
    assert (found.severity, found.state, found.blame, found.count) == (
        Severity.WARNING,
        TcpState.LAST_ACK,
        Blame.NETWORK,
        3,
    )
    assert found.subject.endpoint == _PEER
    assert found.subject.pid is None  # a LAST_ACK no process holds
    assert "over the paste's 4 captures (SYN_RECV 3, LAST_ACK 1)" in found.summary
    assert "one of them still resends now" in found.summary
    evidence = {e.name: e.value for e in found.evidence}
    assert (evidence["connections"], evidence["syn_recv"], evidence["last_ack"]) == (3, 3, 1)


def test_no_finding_once_the_peer_no_longer_resends_in_the_last_sample() -> None:
    """What the path did once is not what it does now."""
    healthy = _row("ESTAB", 50000, "", peer="180.169.229.242")
    assert _losing(_paste(*_HANDSHAKES, [_LAST_ACK], [healthy])) == []


def test_handshake_resends_alone_do_not_warn() -> None:
    """SYN-ACKs resent with no close seen: a client that went away, a scan or a deferred
    accept look the same; the peer being there is not shown."""
    snapshot = _paste(*_HANDSHAKES, [_row("SYN-RECV", 18550, "timer:(on,2sec,2)")])
    assert _losing(snapshot) == []


def test_fewer_connections_than_the_threshold_do_not_warn() -> None:
    two = [[_row("SYN-RECV", 18542, "timer:(on,1.816ms,3)")], [_LAST_ACK]]
    assert _losing(_paste(*two)) == []


def test_resends_without_a_retransmit_count_or_toward_several_peers_do_not_add_up() -> None:
    no_count = _paste(
        [_row("SYN-RECV", 18536, "timer:(on,1.808ms,0)")], *_HANDSHAKES[1:], [_LAST_ACK]
    )
    assert _losing(no_count) == []  # 18536 never resent: two connections left
    other = _paste(
        [_row("SYN-RECV", 18536, "timer:(on,1.808ms,2)", peer="39.182.84.105")],
        *_HANDSHAKES[1:],
        [_LAST_ACK],
    )
    assert _losing(other) == []


def test_a_masked_peer_is_not_taken_for_one_host() -> None:
    masked = [
        [_row("SYN-RECV", p, "timer:(on,1sec,2)", peer="95.x.x.x") for p in (1, 2, 3)],
        [_row("LAST-ACK", 3, "timer:(on,17sec,4)", peer="95.x.x.x")],
    ]
    assert _losing(_paste(*masked)) == []


def test_one_look_holding_the_whole_pattern_warns_too() -> None:
    """The same sockets get the same verdict whatever the sample count."""
    rows = [*_HANDSHAKES[0], _row("SYN-RECV", 18540, "timer:(on,1sec,1)"), _LAST_ACK]
    (found,) = _losing(_paste(rows))
    assert "in this look" in found.summary and found.count == 4
