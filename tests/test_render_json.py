from __future__ import annotations

import json
from typing import Any

from tcphealth.model import Severity, TcpInfo, TimerKind
from tcphealth.render import RenderOptions, View, render
from tcphealth.report import build_report
from tests.scenario_helpers import (
    finding,
    leak_finding,
    leak_snapshot,
    output,
    proc,
    snap,
    sock,
    string_env,
)


def _json(view: View = View.REPORT, **options: Any) -> Any:
    env = string_env()
    report = build_report(leak_snapshot(), [leak_finding()])
    render(report, "json", RenderOptions(view=view, **options), env)
    return json.loads(output(env))


def _ndjson(view: View = View.REPORT, **options: Any) -> list[Any]:
    env = string_env()
    report = build_report(leak_snapshot(), [leak_finding()])
    render(report, "ndjson", RenderOptions(view=view, **options), env)
    return [json.loads(line) for line in output(env).splitlines()]


def test_document_header_host_and_summary() -> None:
    document = _json()
    assert list(document) == [
        "format",
        "version",
        "host",
        "filters",
        "empty_selection",
        "summary",
        "attribution",
        "findings",
        "namespaces",
        "processes",
        "unowned",
        "series",
        "notes",
    ]
    assert (document["format"], document["version"]) == ("tcphealth.report", 2)
    assert document["namespaces"] == []  # a snapshot that knows nothing of namespaces
    assert document["host"] == {
        "hostname": "web-1",
        "kernel": "6.1.0",
        "platform": "linux",
        "source": "procfs",
        "taken_at": "2024-05-01T12:00:00Z",
        "taken_at_epoch": 1714564800.0,
        "privileged": True,
    }
    assert document["summary"] == {
        "sockets": 6,
        "states": {
            "ESTABLISHED": 0,
            "SYN_SENT": 0,
            "SYN_RECV": 0,
            "FIN_WAIT1": 0,
            "FIN_WAIT2": 0,
            "TIME_WAIT": 1,
            "CLOSE": 0,
            "CLOSE_WAIT": 3,
            "LAST_ACK": 0,
            "LISTEN": 2,
            "CLOSING": 0,
        },
        "findings": {"CRITICAL": 1, "WARNING": 0, "INFO": 0},
        "worst": "CRITICAL",
        "age_decides": 0,
        "reported_states": {},
        "truncated_sockets": 0,
        "skipped_lines": 0,
        "namespaces": 0,
        "containers": 0,
    }
    assert "sockets" not in document


def test_finding_shape() -> None:
    assert _json()["findings"] == [
        {
            "code": "close-wait-leak",
            "severity": "CRITICAL",
            "state": "CLOSE_WAIT",
            "blame": "local-application",
            "pid": 812,
            "process": "java",
            "count": 3,
            "summary": "java read the peer's FIN but never closed 3 connections.",
            "evidence": [
                {"name": "recv_queue", "value": 0, "detail": "read to EOF, close() never called"}
            ],
            "next_steps": [
                "Find where java opens connections to 10.20.0.15:5432 without closing them."
            ],
            "subject": {
                "kind": "process",
                "pid": 812,
                "pids": [812],
                "process": "java",
                "endpoint": "10.20.0.15:5432",
            },
            "unchecked": ["how long the sockets have been idle"],
            "netns": None,
            "container": None,
            "pod": None,
            "outside_filter": [],
        }
    ]


def test_process_and_unowned_shape() -> None:
    document = _json()
    java = document["processes"][0]
    assert java == {
        "pid": 812,
        "name": "java",
        "user": "app",
        "uid": None,
        "cmdline": ["java", "-jar"],
        "open_fds": 311,
        "fd_soft_limit": 65536,
        "fd_hard_limit": None,
        "sockets": 4,
        "states": {"CLOSE_WAIT": 3, "LISTEN": 1},
        "worst": {"code": "close-wait-leak", "severity": "CRITICAL"},
        "findings": ["close-wait-leak"],
        "groups": [
            {
                "state": "CLOSE_WAIT",
                "local": "10.0.0.5:*",
                "remote": "10.20.0.15:5432",
                "peers": 1,
                "count": 3,
                "recv_queue_max": 1,
                "send_queue_max": 0,
                "listen_backlog": None,
                "oldest_seconds": None,
                "netns": None,
                "unaccepted": 0,
            },
            {
                "state": "LISTEN",
                "local": "0.0.0.0:8080",
                "remote": "0.0.0.0:0",
                "peers": 1,
                "count": 1,
                "recv_queue_max": 0,
                "send_queue_max": 0,
                "listen_backlog": 100,
                "oldest_seconds": None,
                "netns": None,
                "unaccepted": 0,
            },
        ],
        "netns": None,
        "container": None,
        "pod": None,
        "unit": None,
        "host_network": False,
    }
    assert [p["pid"] for p in document["processes"]] == [812, 611]
    assert document["processes"][1]["worst"] is None
    assert document["unowned"]["sockets"] == 1
    assert document["unowned"]["states"] == {"TIME_WAIT": 1}


def test_sockets_are_included_on_request_with_nulls_for_the_unknown() -> None:
    sockets = _json(with_sockets=True)["sockets"]
    assert len(sockets) == 6
    assert sockets[-1] == {
        "state": "TIME_WAIT",
        "family": "ipv4",
        "local": "10.0.0.5:80",
        "remote": "192.0.2.40:49200",
        "pids": [],
        "process": None,
        "owner": "none",
        "send_queue": 0,
        "recv_queue": 0,
        "listen_backlog": None,
        "timer": "timewait",
        "timer_seconds": 12.5,
        "retransmits": None,
        "probes": None,
        "uid": None,
        "inode": 0,
        "raw_state": None,
        "truncated": False,
        "tcp_info": None,
        "shutdown": None,
        "drops": None,
        "first_seen": None,
        "age_seconds": None,
        "samples_seen": None,
        "age_at_least_seconds": None,
        "netns": None,
        "netns_inode": None,
        "container": None,
        "pod": None,
    }
    assert _json(View.SOCKETS)["sockets"] == sockets


def test_ipv6_endpoints_are_bracketed_and_tcp_info_is_an_object() -> None:
    connection = sock(
        "ESTABLISHED",
        "[2001:db8::5]:443",
        "[2001:db8::7]:50000",
        5,
        timer=TimerKind.RETRANSMIT,
        tcp_info=TcpInfo(rtt_us=1500, last_data_recv_ms=20),
    )
    env = string_env()
    render(build_report(snap([connection], [proc(5, "x")]), []), "json", RenderOptions(), env)
    document = json.loads(output(env))
    group = document["processes"][0]["groups"][0]
    assert (group["local"], group["remote"]) == ("[2001:db8::5]:443", "[2001:db8::7]:*")
    env = string_env()
    report = build_report(snap([connection], [proc(5, "x")]), [])
    render(report, "json", RenderOptions(with_sockets=True), env)
    socket = json.loads(output(env))["sockets"][0]
    assert (socket["family"], socket["local"], socket["remote"]) == (
        "ipv6",
        "[2001:db8::5]:443",
        "[2001:db8::7]:50000",
    )
    assert socket["tcp_info"]["rtt_us"] == 1500
    assert socket["tcp_info"]["retransmits"] is None


def test_an_empty_socket_list_is_valid_json() -> None:
    env = string_env()
    render(build_report(snap(), []), "json", RenderOptions(view=View.SOCKETS), env)
    assert json.loads(output(env))["sockets"] == []


def test_hostile_names_are_escaped_ascii() -> None:
    evil = proc(66, "x\x1b[2J\u202e", "root")
    env = string_env()
    report = build_report(snap([sock("LISTEN", "0.0.0.0:1", "0.0.0.0:0", 66)], [evil]), [])
    render(report, "json", RenderOptions(), env)
    text = output(env)
    assert text.isascii()
    assert "\\u001b[2J\\u202e" in text
    assert json.loads(text)["processes"][0]["name"] == "x\x1b[2J\u202e"


def test_ndjson_is_findings_then_sockets_each_with_a_type() -> None:
    assert [(o["type"], o["code"]) for o in _ndjson()] == [("finding", "close-wait-leak")]
    lines = _ndjson(with_sockets=True)
    assert [o["type"] for o in lines] == ["finding"] + ["socket"] * 6
    assert lines[1]["local"] == "0.0.0.0:8080" and lines[1]["pids"] == [812]
    assert [o["type"] for o in _ndjson(View.SOCKETS)] == ["socket"] * 6
    assert [o["type"] for o in _ndjson(View.CHECK)] == ["finding"]


def test_json_and_ndjson_and_plain_agree_on_the_findings() -> None:
    report = build_report(leak_snapshot(), [leak_finding(), finding("x", Severity.INFO, None)])
    env_json, env_nd, env_plain = string_env(), string_env(), string_env()
    render(report, "json", RenderOptions(), env_json)
    render(report, "ndjson", RenderOptions(), env_nd)
    render(report, "plain", RenderOptions(view=View.CHECK), env_plain)
    from_json = [f["code"] for f in json.loads(output(env_json))["findings"]]
    from_nd = [json.loads(line)["code"] for line in output(env_nd).splitlines()]
    from_plain = [line.split()[1].removeprefix("code=") for line in output(env_plain).splitlines()]
    assert from_json == from_nd == from_plain == ["close-wait-leak", "x"]
