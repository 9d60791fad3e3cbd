"""listen-overflowed-short-backlog: overflows since boot, and a paste's whole listing holds one
listener with a short backlog -- the shape of dubbo#5168 (issue #22): `netstat -s`'s 3220
overflows above `ss -lnt` showing only *:20880 with the JDK's backlog of 50."""

from __future__ import annotations

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.model import Blame, Finding, Severity, TcpState
from tcphealth.sources.text.lines import lists_every_listener
from tcphealth.sources.text.paste import read_paste

_COUNTERS = (
    "{n} times the listen queue of a socket overflowed \n{n} SYNs to LISTEN sockets dropped\n"
)
_HEADER = "State Recv-Q Send-Q Local Address:Port Peer Address:Port \n"


def _findings(text: str) -> list[Finding]:
    return diagnose(read_paste(text.splitlines(), "paste")[-1])


def _overflow(text: str) -> Finding:
    (found,) = [f for f in _findings(text) if f.code.startswith("listen-overflowed")]
    return found


def _paste(
    overflows: int = 3220,
    command: str = "ss -lnt ",
    rows: tuple[str, ...] = ("LISTEN 0 50 *:20880 *:*",),
    extra: str = "",
) -> str:
    return (
        _COUNTERS.format(n=overflows)
        + extra
        + f"[~]# {command}\n"
        + _HEADER
        + "\n".join(rows)
        + "\n"
    )


def test_the_one_listener_of_a_whole_listing_with_a_short_backlog_is_taken_for_where() -> None:
    found = _overflow(_paste())
    assert (found.code, found.severity, found.state, found.blame) == (
        "listen-overflowed-short-backlog",
        Severity.WARNING,
        TcpState.LISTEN,
        Blame.LOCAL_APPLICATION,
    )
    assert found.subject.endpoint == "0.0.0.0:20880"
    assert "a backlog of 50" in found.summary and "Taking the drops to be its own" in found.summary
    # The assumption and what stays unknown are said.
    assert found.unchecked[0].startswith("that the drops were 0.0.0.0:20880's")
    assert found.unchecked[1].startswith("when: the counter counts since boot")


@pytest.mark.parametrize(
    "text",
    [
        # The listing was narrowed: other listeners may exist.
        _paste(command="ss -lnt | grep 20880"),
        _paste(command="ss -lnt sport = :20880"),
        # Listeners are not in what the command shows.
        _paste(command="ss -nt"),
        # Two services: which one overflowed, the counter does not say.
        _paste(rows=("LISTEN 0 50 *:20880 *:*", "LISTEN 0 128 *:22 *:*")),
        # A usual backlog: the short queue is not shown.
        _paste(rows=("LISTEN 0 128 *:20880 *:*",)),
        # A few drops since boot.
        _paste(overflows=15),
    ],
)
def test_otherwise_the_since_boot_overflows_stay_information(text: str) -> None:
    found = _overflow(text)
    assert (found.code, found.severity) == ("listen-overflowed", Severity.INFO)


def test_both_families_on_one_port_are_one_listener() -> None:
    found = _overflow(_paste(rows=("LISTEN 0 50 *:20880 *:*", "LISTEN 0 50 [::]:20880 [::]:*")))
    assert found.code == "listen-overflowed-short-backlog"


def test_a_somaxconn_that_caps_the_backlog_puts_the_blame_on_the_setting() -> None:
    found = _overflow(_paste(extra="net.core.somaxconn = 50\n"))
    assert (found.code, found.blame) == ("listen-overflowed-short-backlog", Blame.KERNEL_LIMIT)
    assert "net.core.somaxconn (50) caps it" in found.summary


@pytest.mark.parametrize(
    ("command", "every"),
    [
        ("ss -lnt ", True),
        ("ss -nltp | awk '{print $0}'", True),
        ("netstat -anp | grep LISTEN", True),
        ("ss -Hltn state listening", True),
        ("netstat -lntp | sort -k4", True),
        ("ss -tan", True),
        ("ss -nt", False),
        ("ss -lnt | grep 20880", False),
        ("ss -ltn sport = :80", False),
        ("ss -ltn '( sport = :80 )'", False),
        ("ss -ltn | head", False),
        ("ss -tn state established", False),
        ("ss -ltn | awk '$4 ~ /:80$/'", False),
        ("uptime", False),
    ],
)
def test_which_commands_list_every_listener(command: str, every: bool) -> None:
    assert lists_every_listener(command) is every
