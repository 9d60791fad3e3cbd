"""Per-destination port supply needs the real address (issue 22): a paste's host names are
destinations of their own, and a mask or placeholder may stand for several hosts, so the
ports toward it are not judged as one destination's -- said at INFO, with what would tell.

Before, every name shared the family's stand-in address (0.0.0.0): TIME_WAIT or connections
to db1 and db2 were summed as one destination "0.0.0.0:5432" and could warn falsely.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tcphealth.cli import main
from tcphealth.diagnose.index import hides_host

# A paste with a 100-port range, so that a few rows make a share.
HEAD = (
    "$ sysctl net.ipv4.ip_local_port_range\n"
    "net.ipv4.ip_local_port_range = 40000\t40099\n"
    "$ netstat -at\n"
    "Proto Recv-Q Send-Q Local Address           Foreign Address         State\n"
)


def rows(count: int, local: str, remote: str, state: str) -> str:
    return "".join(
        f"tcp        0      0 {local}:{40000 + i}        {remote}        {state}\n"
        for i in range(count)
    )


def check(tmp_path: Path, text: str) -> tuple[int, list[dict[str, Any]]]:
    path = tmp_path / "paste.txt"
    path.write_text(HEAD + text, "utf-8")
    result = CliRunner().invoke(main, ["check", "--from", str(path), "--format", "json"])
    return result.exit_code, json.loads(result.stdout)["findings"]


def test_two_named_hosts_are_two_destinations(tmp_path: Path) -> None:
    both = rows(60, "app01", "db1.example.com:postgresql", "TIME_WAIT") + rows(
        60, "app01", "db2.example.com:postgresql", "TIME_WAIT"
    )
    code, findings = check(tmp_path, both)
    assert code == 1
    assert sorted((f["code"], f["count"], f["subject"]["endpoint"]) for f in findings) == [
        ("time-wait-ports-exhausting", 60, "db1.example.com:5432"),
        ("time-wait-ports-exhausting", 60, "db2.example.com:5432"),
    ]
    assert "from app01 to db1.example.com:5432" in min(f["summary"] for f in findings)
    # 40 each is 40% of each host's supply: nothing, though 80 together would warn.
    few = rows(40, "app01", "db1.example.com:postgresql", "TIME_WAIT") + rows(
        40, "app01", "db2.example.com:postgresql", "TIME_WAIT"
    )
    assert check(tmp_path, few) == (0, [])


@pytest.mark.parametrize(
    ("state", "code"),
    [("TIME_WAIT", "time-wait-address-hidden"), ("ESTABLISHED", "ephemeral-ports-address-hidden")],
)
def test_a_masked_destination_is_not_judged_as_one(tmp_path: Path, state: str, code: str) -> None:
    exit_code, findings = check(tmp_path, rows(95, "10.0.0.1", "XX.XX.XX.XX:5432", state))
    assert exit_code == 0  # INFO: the claim needs the real address
    (finding,) = findings
    assert (finding["code"], finding["severity"], finding["count"]) == (code, "INFO", 95)
    assert finding["subject"]["endpoint"] == "XX.XX.XX.XX:5432"
    assert "0.0.0.0" not in finding["summary"]
    assert "the paste shows 'XX.XX.XX.XX' where the address was" in finding["summary"]
    assert "could not be told" in finding["summary"]
    (unchecked,) = finding["unchecked"]
    assert unchecked.startswith("which hosts these connections go to: the paste hides")


def test_the_same_rows_unmasked_are_judged(tmp_path: Path) -> None:
    code, findings = check(tmp_path, rows(95, "10.0.0.1", "10.9.9.9:5432", "TIME_WAIT"))
    assert code == 2
    assert [(f["code"], f["severity"]) for f in findings] == [
        ("time-wait-ports-exhausting", "CRITICAL")
    ]


@pytest.mark.parametrize(
    ("name", "hidden"),
    [
        ("XX.XX.XX.XX", True),
        ("192.x.x.x", True),
        ("ip-10-X-X-XXX.ec2.internal", True),  # quickbooks-160's local name
        ("...", True),
        ("<server 1>", True),
        ("yahoo.", True),  # cut short by netstat: a prefix many hosts may share
        ("db1.example.com", False),
        ("localhost", False),
        ("ec2-3-135-245-101.us-east-2.compute.amazonaws.com", False),
        ("yyz12s05-in-f4.1e100.net", False),
        (None, False),
    ],
)
def test_which_names_hide_the_host(name: str | None, hidden: bool) -> None:
    assert hides_host(name) is hidden
