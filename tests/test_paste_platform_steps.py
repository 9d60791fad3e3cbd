"""Next steps for a pasted count whose table (there is none) does not say the platform.

``netstat -an | grep -c CLOSE_WAIT`` runs on Linux, macOS, BSD and (with findstr) Windows, so
a paste of it alone does not say where it was taken: its Linux steps say they are Linux
commands. A count printed by a tool only one platform has (``ss``) says it; a count of
BSD's ``CLOSED`` says BSD.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.diagnose.shared import UNKNOWN_PLATFORM, steps_platform
from tcphealth.model import Finding, Snapshot
from tcphealth.sources.text.paste import read_paste
from tests.builders import many, process, snapshot, sock

REALWORLD = Path(__file__).resolve().parent.parent / "fixtures" / "realworld" / "threads"
UNSAID = "# a Linux command: the paste does not say which system it comes from"


def _last(text: str) -> Snapshot:
    return read_paste(text.splitlines(), "paste.txt")[-1]


def _finding(snapshot: Snapshot, code: str) -> Finding:
    (found,) = [finding for finding in diagnose(snapshot) if finding.code == code]
    return found


@pytest.mark.parametrize(
    "command",
    [
        "netstat -an | grep -c CLOSE_WAIT",
        "netstat -anp | grep CLOSE_WAIT | wc -l",
        "lsof -nP -iTCP | grep -c CLOSE_WAIT",
    ],
)
def test_a_count_from_a_tool_every_system_has_marks_its_linux_steps(command: str) -> None:
    snapshot = _last(f"$ {command}\n552\n")
    assert snapshot.host.platform is None
    assert steps_platform(snapshot) == UNKNOWN_PLATFORM
    steps = _finding(snapshot, "close-wait-counted").next_steps
    linux = [step for step in steps if step.startswith("ss ")]
    assert linux, steps
    assert all(step.endswith(UNSAID) for step in linux), steps
    # What is not a command of one system stays as it is.
    assert all(UNSAID not in step for step in steps if step not in linux)


@pytest.mark.parametrize(
    "command", ["ss -tan state close-wait | wc -l", "sudo ss -tanp | grep -c CLOSE-WAIT"]
)
def test_a_count_printed_by_ss_is_from_linux_and_unmarked(command: str) -> None:
    snapshot = _last(f"$ {command}\n553\n")
    assert steps_platform(snapshot) == "linux"
    steps = _finding(snapshot, "close-wait-counted").next_steps
    assert steps[0].startswith("ss -tanp state close-wait")
    assert not any("a Linux command" in step for step in steps)


def test_a_count_of_bsd_s_closed_gets_bsd_steps() -> None:
    steps = _finding(_last("$ netstat -an | grep -c CLOSED\n4000\n"), "close-counted").next_steps
    assert steps[0] == "netstat -an -p tcp | grep -c CLOSED"
    assert not any(step.startswith("ss ") for step in steps)


# --- the rules that had only Linux steps: close_wait, handshake, closing, descriptors ---------

LINUX_ONLY = ("ss ", "nstat ", "strace ", "sysctl net.", "cat /proc/", "ls /proc/", "ls -l /proc/")


def _on(platform: str, snap: Snapshot) -> Snapshot:
    return replace(snap, host=replace(snap.host, platform=platform))


def _scenes() -> dict[str, Snapshot]:
    """One made-up host per finding, with the pid 4242 (or none) as the holder."""
    owner = (process(4242, "app", open_fds=950, soft_limit=1024),)
    return {
        "close-wait-not-closed": snapshot(
            many(
                20,
                lambda i: sock(
                    "CLOSE_WAIT", f"10.0.0.1:{40000 + i}", "10.0.0.2:80", pids=(4242,), recv_queue=0
                ),
            ),
            processes=owner,
        ),
        "close-wait-unread-data": snapshot(
            many(
                20,
                lambda i: sock(
                    "CLOSE_WAIT", f"10.0.0.1:{40000 + i}", "10.0.0.2:80", pids=(4242,), recv_queue=5
                ),
            ),
            processes=owner,
        ),
        "close-wait-owner-unknown": snapshot(
            many(12, lambda i: sock("CLOSE_WAIT", "10.0.0.1:8080", f"10.0.0.{i + 2}:5000"))
        ),
        "syn-recv-no-final-ack": snapshot(
            many(
                300,
                lambda i: sock(
                    "SYN_RECV", "10.0.0.1:443", f"192.0.2.{i % 250 + 1}:{30000 + i}", retransmits=2
                ),
            ),
        ),
        "syn-sent-unanswered": snapshot(
            many(
                12,
                lambda i: sock(
                    "SYN_SENT",
                    f"10.0.0.1:{40000 + i}",
                    "198.51.100.7:5432",
                    pids=(4242,),
                    retransmits=4,
                ),
            )
        ),
        "fin-wait1-fin-unacknowledged": snapshot(
            many(
                120,
                lambda i: sock(
                    "FIN_WAIT1", f"10.0.0.1:{40000 + i}", "198.51.100.9:443", retransmits=5
                ),
            )
        ),
        "fin-wait2-held": snapshot(
            many(
                60,
                lambda i: sock(
                    "FIN_WAIT2",
                    f"10.0.0.1:{40000 + i}",
                    "198.51.100.30:873",
                    pids=(4242,),
                    inode=1000 + i,
                ),
            ),
            processes=owner,
        ),
        "fd-limit-near": snapshot(
            many(
                3,
                lambda i: sock(
                    "ESTABLISHED", f"10.0.0.1:{40000 + i}", "198.51.100.40:80", pids=(4242,)
                ),
            ),
            processes=owner,
        ),
    }


# The first step on each platform: its own tool, listing what the finding is about.
FIRST = {
    "darwin": ("lsof ", "netstat "),
    "windows": ("Get-NetTCPConnection ", "Get-Process "),
}


@pytest.mark.parametrize("platform", ["darwin", "windows"])
@pytest.mark.parametrize("code", list(_scenes()))
def test_a_bsd_or_windows_paste_gets_that_system_s_commands(platform: str, code: str) -> None:
    snap = _on(platform, _scenes()[code])
    found = {finding.code: finding for finding in diagnose(snap)}
    # BSD and macOS count the data alone in Recv-Q, so 0 there does not say "read to the end".
    shown = "close-wait-held" if code == "close-wait-not-closed" and platform == "darwin" else code
    assert shown in found, sorted(found)
    steps = found[shown].next_steps
    assert steps[0].startswith(FIRST[platform]), steps
    assert not any(step.startswith(LINUX_ONLY) for step in steps), steps
    assert not any("a Linux command" in step for step in steps), steps
    # Plain output joins the steps with "; ": our own words never hold one.
    assert not any(";" in step for step in steps), steps
    # The same host on Linux keeps its ss and /proc steps.
    (linux,) = [f for f in diagnose(_on("linux", snap)) if f.code == code]
    assert linux.next_steps[0].startswith(("ss ", "ls /proc/")), linux.next_steps


def test_the_named_pid_and_state_reach_each_system_s_command() -> None:
    held = _on("darwin", _scenes()["close-wait-not-closed"])
    steps = _finding(held, "close-wait-held").next_steps
    assert steps[:2] == (
        "lsof -nP -a -p 4242 -iTCP -sTCP:CLOSE_WAIT",
        "sockstat -46s -P tcp | awk '$3 == 4242 && /CLOSE_WAIT/'   # the same on FreeBSD",
    )
    windows = _finding(_on("windows", _scenes()["fin-wait2-held"]), "fin-wait2-held")
    assert windows.next_steps[0] == "Get-NetTCPConnection -State FinWait2 -OwningProcess 4242"
    unanswered = _finding(_on("windows", _scenes()["syn-sent-unanswered"]), "syn-sent-unanswered")
    assert "Test-NetConnection 198.51.100.7 -Port 5432" in unanswered.next_steps
    assert unanswered.next_steps[0] == (
        "Get-NetTCPConnection -State SynSent -RemoteAddress 198.51.100.7"
    )


def test_a_real_macos_paste_of_close_wait_gets_netstat_and_lsof() -> None:
    # Before: "ss -tnpo state close-wait '( sport = :8080 )' ... # a Linux command: not on
    # macOS or BSD" as the only way to look again.
    path = (
        REALWORLD / "github-srs-636_macos-netstat-tcp4-dotted-ports_closewait-stuck-http-stream.txt"
    )
    snapshot_ = read_paste(path.read_text(encoding="utf-8").splitlines(), path.name)[-1]
    assert snapshot_.host.platform == "darwin"
    finding = _finding(snapshot_, "close-wait-age-decides")
    assert finding.next_steps[:2] == (
        "netstat -an -p tcp | awk '$6 == \"CLOSE_WAIT\" && $4 ~ /[.]8080$/'   # again after 60 s: "
        "the same ones still there are a leak",
        "lsof -nP -iTCP:8080 -sTCP:CLOSE_WAIT   # who holds them (macOS, as root)",
    )


def test_lsof_rows_tell_their_platform_by_the_socket_device_column() -> None:
    """lsof runs everywhere, so its format names no platform; its DEVICE column does: a
    socket's inode in decimal on Linux, the kernel's address in hex on macOS and the BSDs."""
    macos = (
        REALWORLD / "github-apodini-358_lsof-i-hostnames-elided_established-client-not-listener.txt"
    )
    seen = read_paste(macos.read_text(encoding="utf-8").splitlines(), macos.name)[-1]
    assert seen.host.platform == "darwin"
    # Its cut listing asks for the rest with macOS's tools, not with ss.
    (elided,) = [f for f in diagnose(seen) if f.code == "listing-elided"]
    assert (
        elided.next_steps[0].startswith("Paste the whole listing")
        and "lsof -nP" in (elided.next_steps[0])
    )
    linux = (
        REALWORLD
        / "github-quickbooks-160_lsof-tid-column-masked-hostnames-split-state_closewait-sdk.txt"
    )
    assert (
        read_paste(linux.read_text(encoding="utf-8").splitlines(), linux.name)[-1].host.platform
        == "linux"
    )
    # Rows of both kinds, or a device that is neither: not told.
    mixed = (
        "homed 485 moritz 19u IPv4 0x23e9f3 0t0 TCP 10.0.0.2:49182->10.0.0.3:8080 (ESTABLISHED)\n"
        "java 22664 app 570u IPv6 57747443 0t0 TCP 10.0.0.2:8888->10.0.0.4:60836 (CLOSE_WAIT)\n"
    )
    assert read_paste(mixed.splitlines(), "mixed")[-1].host.platform is None
    odd = "java 22664 app 570u IPv6 XXXXXXXX 0t0 TCP 10.0.0.2:8888->10.0.0.4:60836 (CLOSE_WAIT)\n"
    assert read_paste(odd.splitlines(), "odd")[-1].host.platform is None
