"""Next steps for a pasted count whose table (there is none) does not say the platform.

``netstat -an | grep -c CLOSE_WAIT`` runs on Linux, macOS, BSD and (with findstr) Windows, so
a paste of it alone does not say where it was taken: its Linux steps say they are Linux
commands. A count printed by a tool only one platform has (``ss``) says it; a count of
BSD's ``CLOSED`` says BSD.
"""

from __future__ import annotations

import pytest

from tcphealth.diagnose import diagnose
from tcphealth.diagnose.shared import UNKNOWN_PLATFORM, steps_platform
from tcphealth.model import Finding, Snapshot
from tcphealth.sources.text.paste import read_paste

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
