"""TIME_WAIT: normal one by one, a problem only in numbers.

TIME_WAIT sits on the side that closed first, for a fixed 60 s. Two limits matter:

* toward one destination (local address, remote address, remote port) a client can have only
  as many connections as there are ephemeral ports (ip_local_port_range); TIME_WAIT near that
  number means new connects there will fail with EADDRNOTAVAIL. Only TIME_WAIT whose local port
  lies in the ephemeral range uses those ports -- this host was the client and closed first.
* host-wide, tcp_max_tw_buckets caps TIME_WAIT; beyond it the kernel skips TIME_WAIT for new
  closes and counts TCPTimeWaitOverflow. Older kernels (2.6) also logged "TCP: time wait bucket
  table overflow": pasted, that line says the cap was hit at the time of the line -- critical,
  unless the paste's own count shows room at its look (then a warning: which came first is not
  said).

One TIME_WAIT matters too, to a program that binds a port of its own choosing: until it ends,
bind() of that address fails with EADDRINUSE (without SO_REUSEADDR on the new socket; a
listener restarted, or a client that picks its source port). A paste holding that error line
beside TIME_WAIT is read so, with the ports they hold as the candidates -- the line rarely
names its port.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import (
    Destination,
    SnapshotIndex,
    destination,
    hides_host,
    plain_address,
)
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.shared import (
    PORTS_RAN_OUT,
    STILL_UNKNOWN,
    error_evidence,
    error_line,
    log_evidence,
    logged,
    logged_times,
    logged_when,
    platform_steps,
    ports_ran_out,
)
from tcphealth.diagnose.wording import (
    destination_text,
    level,
    number,
    percent,
    share_text,
    ss_peer_filter,
    top_destinations,
    who,
)
from tcphealth.model import (
    Blame,
    Endpoint,
    ErrorKind,
    ErrorLine,
    Evidence,
    Finding,
    IPAddress,
    KernelEvent,
    Severity,
    Socket,
    Subject,
    SubjectKind,
    TcpState,
)
from tcphealth.states import LINUX_DEFAULTS, port_range_or_default

# (local address, remote address, remote port): what one ephemeral port range is shared by,
# each address with the name a paste printed in its place (None for a real address).
PortKey = tuple[IPAddress, str | None, IPAddress, int | None, str | None]
_TIME_WAIT_CODE = 6  # the kernel's TCP_TIME_WAIT

PORTS_EXHAUSTING = "time-wait-ports-exhausting"
BUCKET_LIMIT = "time-wait-bucket-limit"
# As many toward an address the paste hides (a mask, a placeholder): per destination, unknown.
ADDRESS_HIDDEN = "time-wait-address-hidden"
BLOCKS_BIND = "time-wait-blocks-bind"

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    from tcphealth.columnar import SocketTable


def _tw_reuse_evidence(reuse: int | None, *, loopback: bool) -> Evidence:
    if reuse is None:
        return Evidence(
            "tcp_tw_reuse",
            None,
            f"not in the snapshot (Linux default {LINUX_DEFAULTS['tcp_tw_reuse']}: loopback only)",
        )
    if reuse == 1 or (reuse == 2 and loopback):
        detail = "new outgoing connections may reuse these ports when timestamps allow"
    elif reuse == 2:
        detail = "reuse on loopback only, so not for this destination"
    else:
        detail = "off: these ports stay taken for the full 60 s"
    return Evidence("tcp_tw_reuse", reuse, detail)


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    sockets = index.sockets(TcpState.TIME_WAIT)
    (low, high), _ = port_range_or_default(index.snapshot.sysctls)

    everywhere: Counter[Destination] = Counter()
    # (local address, destination) -> TIME_WAIT; folded into PortKey once per distinct pair
    from_client: Counter[tuple[IPAddress, str | None, Destination]] = Counter()
    closed_as_client = 0
    for sock in sockets:
        remote = destination(sock.remote)
        everywhere[remote] += 1
        local_port = sock.local.port
        if local_port is not None and low <= local_port <= high:
            closed_as_client += 1
            from_client[(sock.local.address, sock.local.name, remote)] += 1
    return _judged(
        index, thresholds, len(sockets), closed_as_client, everywhere, from_client, lambda: sockets
    )


def check_table(index: SnapshotIndex, thresholds: Thresholds, table: SocketTable) -> list[Finding]:
    """:func:`check`, counting over ``table`` (every socket of the index's snapshot, as
    columns) instead of the TIME_WAIT objects: the same findings in the same order
    (tests/test_lean_rules.py)."""
    import numpy as np

    from tcphealth.columnar import AddressTable, distinct_rows_first

    (low, high), _ = port_range_or_default(index.snapshot.sysctls)
    columns = table.columns
    rows = np.flatnonzero(columns.state == _TIME_WAIT_CODE)
    addresses = AddressTable()
    family, src_high, src_low, dst_high, dst_low, dport = columns.ends_at(rows)

    def remote_of(kind: int, high_half: int, low_half: int, port: int) -> Destination:
        return destination(Endpoint(addresses.get(kind, high_half, low_half), port))

    # Each distinct value counted once, folded in the order the object loop meets it.
    everywhere: Counter[Destination] = Counter()
    values, counts, first = distinct_rows_first([family, dst_high, dst_low, dport])
    for at in sorted(range(len(counts)), key=first.__getitem__):
        everywhere[remote_of(*(value[at] for value in values))] += counts[at]
    sport = columns.sport[rows]
    client = (sport >= low) & (sport <= high)
    picked = np.flatnonzero(client)
    from_client: Counter[tuple[IPAddress, str | None, Destination]] = Counter()
    values, counts, first = distinct_rows_first(
        [key[picked] for key in (family, src_high, src_low, dst_high, dst_low, dport)]
    )
    for at in sorted(range(len(counts)), key=first.__getitem__):
        kind, local_high, local_low, high_half, low_half, port = (value[at] for value in values)
        local = addresses.get(kind, local_high, local_low)
        from_client[(local, None, remote_of(kind, high_half, low_half, port))] += counts[at]

    # The TIME_WAIT objects only for a paste's EADDRINUSE line (never in a live table).
    def objects() -> Sequence[Socket]:
        return index.sockets(TcpState.TIME_WAIT)

    return _judged(index, thresholds, len(rows), len(picked), everywhere, from_client, objects)


def _judged(
    index: SnapshotIndex,
    thresholds: Thresholds,
    total: int,
    closed_as_client: int,
    everywhere: Counter[Destination],
    from_client: Counter[tuple[IPAddress, str | None, Destination]],
    time_wait_sockets: Callable[[], Sequence[Socket]],
) -> list[Finding]:
    (low, high), range_assumed = port_range_or_default(index.snapshot.sysctls)
    ports = high - low + 1
    per_destination: Counter[PortKey] = Counter()
    for (local, local_name, remote), count in from_client.items():
        key = (plain_address(local), local_name, remote.address, remote.port, remote.name)
        per_destination[key] += count

    findings: list[Finding] = []
    if ports > 0:
        for key, count in per_destination.items():
            finding = _ports_finding(
                index, key, count, ports, (low, high), range_assumed, thresholds
            )
            if finding is not None:
                findings.append(finding)
    bucket = _bucket_finding(index, total, closed_as_client, everywhere, thresholds)
    if bucket is not None:
        findings.append(bucket)
    in_use = error_line(index, ErrorKind.ADDRESS_IN_USE)
    if in_use is not None and total:
        findings.append(_blocks_bind(index, in_use, time_wait_sockets()))
    return findings


def _blocks_bind(index: SnapshotIndex, line: ErrorLine, sockets: Sequence[Socket]) -> Finding:
    """The paste's own EADDRINUSE line beside TIME_WAIT: a bind() of a chosen port met a
    connection of that port still in TIME_WAIT. The line rarely names the port; the TIME_WAIT
    the paste shows hold the candidates."""
    by_port = Counter(sock.local.port for sock in sockets if sock.local.port is not None)
    ports = sorted(by_port)
    shown = ", ".join(str(port) for port in ports[:5]) + (
        f" and {number(len(ports) - 5)} more" if len(ports) > 5 else ""
    )
    one = ports[0] if len(ports) == 1 else None
    subject = (
        Subject(kind=SubjectKind.PEER, endpoint=f"local port {one}")
        if one is not None
        else Subject(kind=SubjectKind.HOST)
    )
    return Finding(
        code=BLOCKS_BIND,
        severity=Severity.WARNING,
        state=TcpState.TIME_WAIT,
        blame=Blame.LOCAL_APPLICATION,
        subject=subject,
        count=len(sockets),
        summary=(
            "The paste's own error line says a bind() found its address already in use "
            f"(EADDRINUSE), and {number(len(sockets))} TIME_WAIT "
            f"{'holds' if len(sockets) == 1 else 'hold'} local "
            f"{'port' if one is not None else 'ports'} {shown}: a program that binds a port of "
            "its choosing -- a client picking its source port, a server restarted without "
            "SO_REUSEADDR -- cannot take it again until the TIME_WAIT of its last connection "
            "there ends. Let the system pick a client's port; set SO_REUSEADDR on a listener."
        ),
        evidence=(
            error_evidence(line, "a bind() found the address it asked for in use"),
            Evidence("time_wait", len(sockets), f"on local ports {shown}"),
        ),
        next_steps=platform_steps(
            index.snapshot.host.platform,
            (
                "ss -tan state time-wait '( sport = :PORT )'   # PORT: the one the program binds",
                "ss -ltnp '( sport = :PORT )'   # a listener there instead: another instance runs",
            ),
            bsd=(
                "netstat -an -p tcp | grep '\\.PORT ' | grep TIME_WAIT   # PORT: the one it binds",
                "lsof -nP -iTCP:PORT -sTCP:LISTEN   # a listener there: another instance runs",
            ),
            windows=(
                "netstat -ano | findstr :PORT   # PORT: the one it binds; TIME_WAIT or LISTENING",
            ),
        ),
        unchecked=(
            "which port the bind asked for: the line does not say; if it is one of these, "
            "their TIME_WAIT is why, and if a listener holds it, another instance is running",
        ),
    )


def _ports_finding(
    index: SnapshotIndex,
    key: PortKey,
    count: int,
    ports: int,
    port_range: tuple[int, int],
    range_assumed: bool,
    thresholds: Thresholds,
) -> Finding | None:
    ratio = count / ports
    severity = level(
        ratio, thresholds.time_wait_ports_warning_ratio, thresholds.time_wait_ports_critical_ratio
    )
    if severity is None:
        return None
    local_address, local_name, remote, remote_port, remote_name = key
    local = local_name or str(local_address)
    peer = Endpoint(remote, remote_port, remote_name)
    target = destination_text(peer)
    hidden = [name for name in (local_name, remote_name) if name is not None and hides_host(name)]
    if hidden:
        return _hidden_destination(index, count, ports, ratio, local, peer, hidden)
    severity, ran_out = ports_ran_out(index, severity)
    low, high = port_range
    evidence: list[Evidence] = [
        Evidence("time_wait", count, f"from {local} to {target}"),
        Evidence(
            "ephemeral_ports",
            ports,
            f"ip_local_port_range {low}-{high}" + (" (default assumed)" if range_assumed else ""),
        ),
        Evidence("port_use", round(ratio, 3), f"{percent(ratio)} of the range"),
        _tw_reuse_evidence(index.snapshot.sysctls.tcp_tw_reuse, loopback=remote.is_loopback),
        *((ran_out,) if ran_out is not None else ()),
    ]
    holders = index.established_pids(peer)
    client = ""
    if holders:
        pid, held = min(holders.items(), key=lambda item: (-item[1], item[0]))
        name = who(index, (pid,))
        evidence.append(
            Evidence("established_client", name, f"holds {number(held)} open connections there")
        )
        client = f" ({name} has open connections there)"
    unchecked = (
        ("ip_local_port_range: not in the snapshot, so the Linux default 32768-60999 was assumed",)
        if range_assumed
        else ()
    )
    return Finding(
        code=PORTS_EXHAUSTING,
        severity=severity,
        state=TcpState.TIME_WAIT,
        blame=Blame.LOCAL_APPLICATION,
        subject=Subject(kind=SubjectKind.PEER, endpoint=target, address=peer),
        count=count,
        summary=(
            f"This host holds {number(count)} TIME_WAIT from {local} to {target}, "
            f"{percent(ratio)} of its {number(ports)} ephemeral ports: a client here"
            f"{client} closes first and opens a new connection per request; once the range "
            "is used up, connects there fail with EADDRNOTAVAIL -- reuse connections "
            "(keep-alive, a pool)" + (PORTS_RAN_OUT if ran_out is not None else "") + "."
        ),
        evidence=tuple(evidence),
        next_steps=(
            f"ss -tan state time-wait {ss_peer_filter(remote, remote_port)} | wc -l",
            "sysctl net.ipv4.ip_local_port_range net.ipv4.tcp_tw_reuse",
            "Make the client keep its connections open and reuse them. Widening "
            "ip_local_port_range or tcp_tw_reuse=1 only buys room.",
        ),
        unchecked=unchecked,
    )


def _hidden_destination(
    index: SnapshotIndex,
    count: int,
    ports: int,
    ratio: float,
    local: str,
    peer: Endpoint,
    hidden: list[str],
) -> Finding:
    """TIME_WAIT enough to use up one destination's ports, toward an address (or from one)
    that the paste masks or cuts short: the mask may stand for several hosts, so whether one
    destination runs out of ports cannot be told. Said, at INFO, with what would tell."""
    target = destination_text(peer)
    shown = ", ".join(repr(name) for name in hidden)
    port_filter = f"'( dport = :{peer.port} )'" if peer.port is not None else ""
    return Finding(
        code=ADDRESS_HIDDEN,
        severity=Severity.INFO,
        state=TcpState.TIME_WAIT,
        blame=Blame.LOCAL_APPLICATION,
        subject=Subject(kind=SubjectKind.PEER, endpoint=target, address=peer),
        count=count,
        summary=(
            f"This host holds {number(count)} TIME_WAIT from {local} to {target}; one "
            f"destination's share of {number(ports)} ephemeral ports would be "
            f"{percent(ratio)}, but the paste shows {shown} where the address was, which may "
            "stand for several hosts, so whether connects to one of them run out of ports "
            "could not be told."
        ),
        evidence=(
            Evidence("time_wait", count, f"from {local} to {target}"),
            Evidence("ephemeral_ports", ports, "the range one destination may use"),
            Evidence("address_hidden", shown, "masked, a placeholder, or cut short"),
        ),
        next_steps=(
            f"ss -tan state time-wait {port_filter} | awk 'NR>1 {{print $3, $4}}' | sort | "
            "uniq -c | sort -rn | head   # per local and remote address, unmasked",
        ),
        unchecked=(
            "which hosts these connections go to: the paste hides the address, and the "
            "port supply is per (local address, remote address, remote port)",
        ),
    )


def _bucket_finding(
    index: SnapshotIndex,
    listed: int,
    closed_as_client: int,
    everywhere: Counter[Destination],
    thresholds: Thresholds,
) -> Finding | None:
    sysctls = index.snapshot.sysctls
    counters = index.snapshot.counters
    limit = sysctls.tcp_max_tw_buckets
    overflows = counters.get("TcpExt.TCPTimeWaitOverflow")
    # sockstat's tw is the kernel's own count (it includes orphaned FIN_WAIT2 on the same
    # timer); the socket list may have been read a moment apart, so take the larger.
    sockstat_tw = counters.get("sockstat.TCP.tw")
    # A pasted `netstat -n | awk '{++S[$NF]}'` summary counts TIME_WAIT it does not list.
    summarised = index.snapshot.state_counts.get(TcpState.TIME_WAIT.value)
    count = max(listed, sockstat_tw or 0, summarised or 0)
    evidence: list[Evidence] = [Evidence("time_wait", listed, "listed in the snapshot")]
    if summarised is not None:
        evidence.append(
            Evidence("time_wait_summary", summarised, "a per-state count in the source")
        )
    if sockstat_tw is not None:
        evidence.append(Evidence("sockstat_tw", sockstat_tw, "the kernel's count"))
    evidence.append(Evidence("tcp_max_tw_buckets", limit, "beyond it closes skip TIME_WAIT"))
    if overflows is not None:
        evidence.append(
            Evidence("TCPTimeWaitOverflow", overflows, "closes that skipped TIME_WAIT since boot")
        )
    evidence.extend(top_destinations(everywhere))
    evidence.append(_tw_reuse_evidence(sysctls.tcp_tw_reuse, loopback=False))
    unchecked: tuple[str, ...] = ()
    logs = logged(index, KernelEvent.TIME_WAIT_OVERFLOW)
    if logs:
        message = logs[0]
        evidence[:0] = log_evidence(
            message, "TIME_WAIT at tcp_max_tw_buckets: those closes skipped TIME_WAIT"
        )
        unchecked = (STILL_UNKNOWN,)

    if limit is None or limit == 0:
        if not overflows and not logs:
            return None
        severity: Severity = Severity.CRITICAL if logs else Severity.WARNING
        unchecked = (
            *unchecked,
            "tcp_max_tw_buckets: not in the snapshot, so the headroom is unknown",
        )
        if logs:
            state_text = (
                f"The kernel logged 'time wait bucket table overflow' {logged_times(logs[0])} "
                f"({logged_when(logs[0])}): at the time of the log line TIME_WAIT was at "
                "tcp_max_tw_buckets, so closes skipped TIME_WAIT"
            )
        else:
            state_text = (
                f"TIME_WAIT has overflowed tcp_max_tw_buckets {number(overflows or 0)} times "
                "since boot"
            )
    elif logs:
        ratio = count / limit
        # Hit then; a count of the kernel's or the paste's own with room at its look makes it
        # a warning (a listing without TIME_WAIT rows may be a filtered one: no such count).
        counted = sockstat_tw is not None or summarised is not None
        severity = (
            Severity.WARNING
            if counted and ratio < thresholds.time_wait_buckets_warning_ratio
            else Severity.CRITICAL
        )
        state_text = (
            f"The kernel logged 'time wait bucket table overflow' {logged_times(logs[0])} "
            f"({logged_when(logs[0])}): at the time of the log line TIME_WAIT was at "
            f"tcp_max_tw_buckets ({number(limit)}), so closes skipped TIME_WAIT and late "
            "packets of old connections could reach new ones"
            + (
                f"; the paste counts {number(count)} ({percent(ratio)}) at its look"
                if counted
                else ""
            )
        )
    else:
        ratio = count / limit
        found = level(
            ratio,
            thresholds.time_wait_buckets_warning_ratio,
            thresholds.time_wait_buckets_critical_ratio,
        )
        # The same summary printed earlier in the paste: a ceiling reached then was reached,
        # whatever the last count says (closes skipped TIME_WAIT at those moments).
        earlier = index.snapshot.earlier_state_counts.get(TcpState.TIME_WAIT.value, ())
        at_ceiling = [value for value in earlier if value >= limit]
        if at_ceiling and count < limit:
            found = Severity.CRITICAL
            evidence.append(
                Evidence(
                    "time_wait_earlier",
                    ", ".join(str(value) for value in earlier),
                    f"the same count printed earlier in the paste, oldest first: "
                    f"{len(at_ceiling)} of {len(earlier)} at or above tcp_max_tw_buckets",
                )
            )
        if found is None:
            if not overflows:
                return None
            severity = Severity.INFO
            state_text = (
                f"TIME_WAIT ({number(count)}) is below tcp_max_tw_buckets ({number(limit)}) now "
                f"but overflowed it {number(overflows)} times since boot"
            )
        else:
            severity = found
            if at_ceiling and count < limit:
                consequence = (
                    f"but it reached the ceiling in {len(at_ceiling)} of the {len(earlier)} "
                    "earlier counts of the same command, when closes skipped TIME_WAIT"
                )
                at = f"now at {percent(ratio)} of its limit"
            elif ratio >= 1.0:
                consequence = "so further closes skip TIME_WAIT"
                at = "at the kernel's ceiling"
            else:
                consequence = "and once it is reached, further closes skip TIME_WAIT"
                at = f"at {percent(ratio)} of its limit"
            state_text = (
                f"TIME_WAIT is {at}: {number(count)} of tcp_max_tw_buckets {number(limit)}, "
                f"{consequence} and late packets of old connections can reach new ones"
            )
    if overflows:
        state_text += f" (TCPTimeWaitOverflow {number(overflows)})"
    if listed:
        closer = (
            f"; this host closed first, as the client, on {number(closed_as_client)} of them "
            f"-- reuse those connections"
            if closed_as_client
            else "; this host closed first on them as the server"
        )
        # Their peers are the clients where this host was the server: not "toward" them.
        side = (
            "from" if not closed_as_client else "toward" if closed_as_client == listed else "with"
        )
        toward = f"; {share_text(everywhere, listed, side)}"
    else:
        closer = toward = ""
        unchecked = (
            *unchecked,
            "which side closed first, and toward whom: the source counts TIME_WAIT but does "
            "not list the sockets",
        )
    return Finding(
        code=BUCKET_LIMIT,
        severity=severity,
        state=TcpState.TIME_WAIT,
        blame=Blame.KERNEL_LIMIT,
        subject=Subject(kind=SubjectKind.HOST),
        count=count,
        summary=f"{state_text}{closer}{toward}.",
        evidence=tuple(evidence),
        next_steps=(
            "nstat -az TcpExtTCPTimeWaitOverflow   # still rising?",
            "dmesg | grep -i 'time wait bucket table overflow'",
            "ss -tan state time-wait | awk 'NR>1 {print $4}' | sort | uniq -c | sort -rn | head",
            "Reuse connections on the side that closes first, or raise "
            "net.ipv4.tcp_max_tw_buckets if memory allows.",
        ),
        unchecked=unchecked,
    )


RULE = Rule(
    name="time_wait",
    summary="TIME_WAIT exhausting ephemeral ports or hitting tcp_max_tw_buckets",
    codes=(
        Code(
            PORTS_EXHAUSTING,
            "TIME_WAIT to one destination uses up the ephemeral ports for new connections there",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            ADDRESS_HIDDEN,
            "TIME_WAIT enough to use up one destination's ports, toward an address the paste "
            "masks or cuts short: whether it is one destination could not be told",
            (Severity.INFO,),
        ),
        Code(
            BUCKET_LIMIT,
            "TIME_WAIT is at or near tcp_max_tw_buckets, or overflowed it since boot or in the "
            "kernel's log",
            (Severity.INFO, Severity.WARNING, Severity.CRITICAL),
            explains_counters=("TcpExt.TCPTimeWaitOverflow",),
        ),
        Code(
            BLOCKS_BIND,
            "the paste's own error line: a bind() found its address in use (EADDRINUSE) while "
            "TIME_WAIT hold local ports a program may bind again",
            (Severity.WARNING,),
        ),
    ),
    check=check,
    check_table=check_table,
)
