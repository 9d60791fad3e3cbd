"""Small builders for hand-made snapshots, findings and environments in the report/render/CLI
tests. (The diagnosis branch owns tests/builders.py; these are separate on purpose.)"""

from __future__ import annotations

import io
import ipaddress
from typing import Any

from tcphealth.model import (
    Attribution,
    Blame,
    Endpoint,
    Evidence,
    Family,
    Finding,
    HostInfo,
    OwnerSource,
    Process,
    Severity,
    Snapshot,
    Socket,
    Subject,
    SubjectKind,
    Sysctls,
    TcpState,
    TimerKind,
)
from tcphealth.render import Environment

TAKEN_AT = 1714564800.0  # 2024-05-01 12:00:00 UTC


def ep(text: str) -> Endpoint:
    """``"10.0.0.5:443"`` or ``"[2001:db8::1]:443"``."""
    address, _, port = text.rpartition(":")
    return Endpoint(ipaddress.ip_address(address.strip("[]")), int(port))


def sock(
    state: TcpState | str,
    local: str,
    remote: str,
    *pids: int,
    **fields: Any,
) -> Socket:
    local_end, remote_end = ep(local), ep(remote)
    fields.setdefault("recv_queue", 0)
    fields.setdefault("send_queue", 0)
    fields.setdefault("owner_source", OwnerSource.FD if pids else OwnerSource.NONE)
    fields.setdefault("inode", 1000 + len(pids) if pids else 0)
    return Socket(
        family=Family.IPV6 if local_end.address.version == 6 else Family.IPV4,
        local=local_end,
        remote=remote_end,
        state=TcpState(state),
        pids=tuple(pids),
        **fields,
    )


def proc(pid: int, name: str | None, user: str | None = "app", **fields: Any) -> Process:
    return Process(pid=pid, name=name, user=user, **fields)


def snap(
    sockets: list[Socket] | tuple[Socket, ...] = (),
    processes: list[Process] | tuple[Process, ...] = (),
    *,
    hostname: str = "web-1",
    sysctls: Sysctls | None = None,
    notes: tuple[str, ...] = (),
    counters: dict[str, int] | None = None,
) -> Snapshot:
    return Snapshot(
        host=HostInfo(
            hostname=hostname,
            kernel="6.1.0",
            taken_at=TAKEN_AT,
            source="procfs",
            privileged=True,
            platform="linux",
        ),
        attribution=Attribution(attempted=True, processes_scanned=len(processes)),
        sysctls=sysctls or Sysctls(ip_local_port_range=(32768, 60999)),
        counters=counters or {},
        processes=tuple(processes),
        sockets=tuple(sockets),
        notes=notes,
    )


def finding(
    code: str,
    severity: Severity,
    state: TcpState | None = TcpState.CLOSE_WAIT,
    *,
    pid: int | None = None,
    process: str | None = None,
    endpoint: str | None = None,
    count: int = 1,
    summary: str = "Something is wrong.",
    kind: SubjectKind = SubjectKind.PROCESS,
    blame: Blame = Blame.LOCAL_APPLICATION,
    evidence: tuple[Evidence, ...] = (),
    next_steps: tuple[str, ...] = (),
    unchecked: tuple[str, ...] = (),
) -> Finding:
    return Finding(
        code=code,
        severity=severity,
        state=state,
        blame=blame,
        subject=Subject(kind=kind, pid=pid, process=process, endpoint=endpoint),
        count=count,
        summary=summary,
        evidence=evidence,
        next_steps=next_steps,
        unchecked=unchecked,
    )


def leak_snapshot() -> Snapshot:
    """java (812) leaks three CLOSE_WAIT to a database; sshd is fine; one TIME_WAIT is nobody's."""
    java = proc(812, "java", "app", open_fds=311, fd_soft_limit=65536, cmdline=("java", "-jar"))
    sshd = proc(611, "sshd", "root")
    return snap(
        [
            sock("LISTEN", "0.0.0.0:8080", "0.0.0.0:0", 812, listen_backlog=100),
            sock("CLOSE_WAIT", "10.0.0.5:40001", "10.20.0.15:5432", 812),
            sock("CLOSE_WAIT", "10.0.0.5:40002", "10.20.0.15:5432", 812),
            sock("CLOSE_WAIT", "10.0.0.5:40003", "10.20.0.15:5432", 812, recv_queue=1),
            sock("LISTEN", "0.0.0.0:22", "0.0.0.0:0", 611, listen_backlog=128),
            sock(
                "TIME_WAIT",
                "10.0.0.5:80",
                "192.0.2.40:49200",
                timer=TimerKind.TIME_WAIT,
                timer_seconds=12.5,
            ),
        ],
        [java, sshd],
    )


def leak_finding(severity: Severity = Severity.CRITICAL) -> Finding:
    return finding(
        "close-wait-leak",
        severity,
        TcpState.CLOSE_WAIT,
        pid=812,
        process="java",
        endpoint="10.20.0.15:5432",
        count=3,
        summary="java read the peer's FIN but never closed 3 connections.",
        evidence=(Evidence("recv_queue", 0, "read to EOF, close() never called"),),
        next_steps=("Find where java opens connections to 10.20.0.15:5432 without closing them.",),
        unchecked=("how long the sockets have been idle",),
    )


def string_env(width: int = 100, *, color: bool = False, tty: bool = False) -> Environment:
    return Environment(
        stdout=io.StringIO(), stderr=io.StringIO(), stdout_isatty=tty, color=color, width=width
    )


def output(env: Environment) -> str:
    stream = env.stdout
    assert isinstance(stream, io.StringIO)
    return stream.getvalue()
