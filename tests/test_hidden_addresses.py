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
        ("$SERVER", True),  # wing-binlog-go#31: shell-variable placeholders
        ("${CLIENT_IP}", True),
        ("%HOST%", True),
        ("{ip}", True),
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


# wing-binlog-go#31, the shape as posted: ss rows without a header or Netid column whose
# addresses a reporter replaced with shell variables, the ports kept.
SHELL_VARIABLE_ROWS = (
    "TIME-WAIT   0      0 $SERVER:34874 $CLIENT:8125\n"
    "TIME-WAIT   0      0 $SERVER:29442 $CLIENT:8125\n"
    "TIME-WAIT   0      0 ${SERVER}:31806 %CLIENT%:8125\n"
    "TIME-WAIT   0      0 {server}:36626 $CLIENT:8125\n"
)


def test_rows_whose_addresses_are_shell_variables_are_read(tmp_path: Path) -> None:
    """Before: 'no TCP socket table found' -- "address '$SERVER' is not numeric"."""
    path = tmp_path / "paste.txt"
    path.write_text(SHELL_VARIABLE_ROWS, "utf-8")
    result = CliRunner().invoke(main, ["sockets", "--from", str(path), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"]["sockets"] == 4
    assert report["summary"]["states"]["TIME_WAIT"] == 4
    # the placeholders are kept as what they are, with their ports: nothing reads as 0.0.0.0
    assert sorted((s["local"], s["remote"]) for s in report["sockets"]) == [
        ("$SERVER:29442", "$CLIENT:8125"),
        ("$SERVER:34874", "$CLIENT:8125"),
        ("${SERVER}:31806", "%CLIENT%:8125"),
        ("{server}:36626", "$CLIENT:8125"),
    ]
