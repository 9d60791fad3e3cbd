"""Ephemeral ports toward one destination, in every state.

A connect() without bind() takes a local port from ``ip_local_port_range``, less the ports in
``ip_local_reserved_ports``. The port must make the 4-tuple unique, so each (local address,
remote address, remote port) has its own supply, and every socket toward that destination
holds one -- ESTABLISHED, SYN_SENT, CLOSE_WAIT and the closing states as much as TIME_WAIT.
When the supply is used up, connect() fails with EADDRNOTAVAIL ("Cannot assign requested
address"). ``tcp_tw_reuse`` can hand out a TIME_WAIT socket's port again, but no other state's.

The TIME_WAIT rule already speaks of destinations that TIME_WAIT alone fills; this one speaks
when the other states are (part of) what fills them, and says how many ports are left.

A paste may hold the error itself: ``connect: cannot assign requested address``. Where a
program says in its own words that the ports ran out (HAProxy's ``no free ports``), the process
that logged it (its syslog tag) ran out of them: critical, whatever the paste lists. Beside a
destination whose supply is filling, the line says it ran out: critical. With nothing in the
paste filling any supply, the line still says connects failed for want of a local address or
port -- most often the ports toward one destination, used up by connections opened per request,
but also an address asked for that is not this host's -- and the finding says which fact (the
sockets per destination against the port range) tells the two apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
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
    error_evidence,
    error_line,
    ports_ran_out,
    widest_counts,
)
from tcphealth.diagnose.wording import (
    destination_text,
    level,
    number,
    percent,
    plural,
    process_subject,
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
    Severity,
    Subject,
    SubjectKind,
    Sysctls,
    TcpState,
)
from tcphealth.states import port_range_or_default

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    from tcphealth.columnar import SocketTable

PORTS_EXHAUSTING = "ephemeral-ports-exhausting"
PORTS_UNAVAILABLE_LOGGED = "ports-unavailable-logged"
PORTS_EXHAUSTED_LOGGED = "ports-exhausted-logged"
# (local address, the name a paste printed for it, destination): one supply of ports.
_Key = tuple[IPAddress, str | None, Destination]
# As many toward (or from) an address the paste hides: whether it is one destination, unknown.
ADDRESS_HIDDEN = "ephemeral-ports-address-hidden"

# States that hold no port of a connection's supply: a listener's own port, a socket never
# connected, and the server side of a handshake (its local port is the listener's).
_NOT_OUTGOING = frozenset(
    {TcpState.LISTEN, TcpState.CLOSE, TcpState.SYN_RECV, TcpState.BOUND_INACTIVE}
)
_LISTEN_CODE = 10  # the kernel's TCP_LISTEN


def usable_ports(sysctls: Sysctls | None) -> tuple[int, tuple[int, int], bool, int]:
    """The ports a connect() may pick: (how many, the range, range assumed, reserved in it)."""
    (low, high), assumed = port_range_or_default(sysctls)
    reserved = 0
    ranges = None if sysctls is None else sysctls.ip_local_reserved_ports
    for first, last in ranges or ():
        overlap = min(last, high) - max(first, low) + 1
        reserved += max(overlap, 0)
    return max(high - low + 1 - reserved, 0), (low, high), assumed, reserved


def _reserved(port: int, ranges: tuple[tuple[int, int], ...] | None) -> bool:
    return any(first <= port <= last for first, last in ranges or ())


# What the counting gives the judging: sockets per supply of ports, those per state, and
# per holder set.
_Counted = tuple[Counter[_Key], dict[_Key, Counter[TcpState]], dict[_Key, Counter[tuple[int, ...]]]]


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    sysctls = index.snapshot.sysctls
    usable, (low, high), assumed, reserved = usable_ports(sysctls)
    if usable <= 0:
        return []
    counted = _counted(index, low, high, sysctls.ip_local_reserved_ports)
    return _judged(index, thresholds, counted, usable, (low, high), assumed, reserved)


def check_table(index: SnapshotIndex, thresholds: Thresholds, table: SocketTable) -> list[Finding]:
    """:func:`check`, counting over ``table`` (every socket of the index's snapshot, as
    columns) instead of the index's socket objects: the same findings
    (tests/test_lean_rules.py compares them)."""
    sysctls = index.snapshot.sysctls
    usable, (low, high), assumed, reserved = usable_ports(sysctls)
    if usable <= 0:
        return []
    could = _could_be_judged(thresholds, usable, high - low + 1)
    counted = _counted_table(table, low, high, sysctls.ip_local_reserved_ports, could)
    return _judged(index, thresholds, counted, usable, (low, high), assumed, reserved)


def _could_be_judged(thresholds: Thresholds, usable: int, span: int) -> Callable[[int], bool]:
    """Whether a supply of ``count`` sockets could meet either test of :func:`_judged`: its
    share of the usable ports at a threshold (the lower of the two, whichever order they are
    set in), or its TIME_WAIT's share of the port range (``span`` ports; its TIME_WAIT are at
    most ``count``). Below both it is counted, then passed over."""
    share = min(thresholds.ports_warning_ratio, thresholds.ports_critical_ratio)
    time_wait = thresholds.time_wait_ports_warning_ratio
    return lambda count: count / usable >= share or count / span >= time_wait


def _counted_table(
    table: SocketTable,
    low: int,
    high: int,
    reserved_ranges: tuple[tuple[int, int], ...] | None,
    could_be_judged: Callable[[int], bool] | None = None,
) -> _Counted:
    import numpy as np

    from tcphealth.columnar import STATE_OF_CODE, AddressTable, distinct_rows, distinct_rows_first

    # Per kernel state code: whether its sockets hold a port of a connection's supply, and
    # where the index's by_state puts that state (TcpState's order).
    outgoing_codes = np.array([state not in _NOT_OUTGOING for state in STATE_OF_CODE])
    rank = [list(TcpState).index(state) for state in STATE_OF_CODE]
    columns = table.columns
    sport = columns.sport
    listening = np.unique(sport[columns.state == _LISTEN_CODE])
    chosen = outgoing_codes[columns.state] & (sport >= low) & (sport <= high)
    chosen &= ~np.isin(sport, listening)
    for first, last in reserved_ranges or ():
        chosen &= (sport < first) | (sport > last)
    rows = np.flatnonzero(chosen)
    if could_be_judged is not None and len(rows):
        # A supply's sockets are some of those toward its remote port: where all of those
        # together could not be judged, none of its supplies is written out (a Python step
        # per supply, thousands of them on a busy host, for counts no finding reads).
        _, port_of, per_port = np.unique(
            columns.dport[rows], return_inverse=True, return_counts=True
        )
        judged = np.array([could_be_judged(count) for count in per_port.tolist()], np.bool_)
        rows = rows[judged[port_of]]
    ends = columns.ends_at(rows)
    addresses = AddressTable()

    def key_of(values: list[list[int]], at: int) -> _Key:
        family, src_high, src_low, dst_high, dst_low, port = (value[at] for value in values[:6])
        local = addresses.get(family, src_high, src_low)
        remote = addresses.get(family, dst_high, dst_low)
        return plain_address(local), None, destination(Endpoint(remote, port))

    # Keys in the order the object path meets them (state by state in TcpState's order,
    # then the sockets' order): the same findings in the same order.
    taken: Counter[_Key] = Counter()
    by_state: dict[_Key, Counter[TcpState]] = {}
    values, counts, first_rows = distinct_rows_first([*ends, columns.state[rows]])
    met = sorted(range(len(counts)), key=lambda at: (rank[values[6][at]], first_rows[at]))
    for at in met:
        key = key_of(values, at)
        taken[key] += counts[at]
        by_state.setdefault(key, Counter())[STATE_OF_CODE[values[6][at]]] += counts[at]
    holders: dict[_Key, Counter[tuple[int, ...]]] = {}
    values, counts = distinct_rows([*ends, table.holders[rows]])
    for at, count in enumerate(counts):
        pids = table.groups[values[6][at]]
        if pids:
            holders.setdefault(key_of(values, at), Counter())[pids] += count
    return taken, by_state, holders


def _counted(
    index: SnapshotIndex,
    low: int,
    high: int,
    reserved_ranges: tuple[tuple[int, int], ...] | None,
) -> _Counted:
    listening = index.listeners_by_port
    # One pass, as cheap per socket as it can be: keyed by integers only -- the identities of
    # the local and remote address objects (sources share them; ipaddress's own hash is slow)
    # and the remote port -- then folded into (local address, destination) once per key.
    # A paste's host name or mask in place of an address shares the family's stand-in
    # address object: the names (None for real addresses) keep such destinations apart.
    raw: dict[tuple[int, str | None, int, int | None, str | None, TcpState], int] = {}
    raw_holders: dict[
        tuple[int, str | None, int, int | None, str | None, tuple[int, ...]], int
    ] = {}
    address_of: dict[int, IPAddress] = {}
    for state, sockets in index.by_state.items():
        if state in _NOT_OUTGOING:
            continue
        for sock in sockets:
            port = sock.local.port
            if port is None or port < low or port > high or port in listening:
                continue
            if reserved_ranges and _reserved(port, reserved_ranges):
                continue
            local, remote = sock.local.address, sock.remote
            local_id, remote_id = id(local), id(remote.address)
            if local_id not in address_of:
                address_of[local_id] = local
            if remote_id not in address_of:
                address_of[remote_id] = remote.address
            local_name, remote_name = sock.local.name, remote.name
            state_key = (local_id, local_name, remote_id, remote.port, remote_name, state)
            raw[state_key] = raw.get(state_key, 0) + 1
            pids = sock.pids
            if pids:
                owner_key = (local_id, local_name, remote_id, remote.port, remote_name, pids)
                raw_holders[owner_key] = raw_holders.get(owner_key, 0) + 1

    def fold(
        local_id: int, local_name: str | None, remote_id: int, port: int | None, name: str | None
    ) -> _Key:
        remote = destination(Endpoint(address_of[remote_id], port, name))
        return plain_address(address_of[local_id]), local_name, remote

    taken: Counter[_Key] = Counter()
    by_state: dict[_Key, Counter[TcpState]] = {}
    for (local_id, local_name, remote_id, port, name, state), count in raw.items():
        key = fold(local_id, local_name, remote_id, port, name)
        taken[key] += count
        by_state.setdefault(key, Counter())[state] += count
    holders: dict[_Key, Counter[tuple[int, ...]]] = {}
    for (local_id, local_name, remote_id, port, name, pids), count in raw_holders.items():
        key = fold(local_id, local_name, remote_id, port, name)
        holders.setdefault(key, Counter())[pids] += count
    return taken, by_state, holders


def _judged(
    index: SnapshotIndex,
    thresholds: Thresholds,
    tallies: _Counted,
    usable: int,
    port_range: tuple[int, int],
    assumed: bool,
    reserved: int,
) -> list[Finding]:
    taken, by_state, holders = tallies
    low, high = port_range
    findings: list[Finding] = []
    filling = False  # a supply the TIME_WAIT rules speak of
    for key, count in taken.items():
        states = by_state[key]
        time_wait = states.get(TcpState.TIME_WAIT, 0)
        if time_wait / (high - low + 1) >= thresholds.time_wait_ports_warning_ratio:
            filling = True
            continue  # TIME_WAIT alone fills it: the TIME_WAIT rule speaks of it
        severity = level(
            count / usable, thresholds.ports_warning_ratio, thresholds.ports_critical_ratio
        )
        if severity is None:
            continue
        findings.append(
            _finding(
                index,
                key,
                count,
                states,
                holders.get(key),
                usable,
                (low, high),
                assumed,
                reserved,
                severity,
            )
        )
    logged = error_line(index, ErrorKind.LOCAL_PORTS)
    if logged is not None and not filling and not findings:
        counted = widest_counts(index.snapshot.reported).get(TcpState.TIME_WAIT)
        if counted is None or counted.sockets < thresholds.time_wait_counted_warning:
            if logged.ports_named:
                findings.append(_ran_out_logged(index, logged, (low, high), assumed))
            else:
                findings.append(_unavailable(logged, (low, high), assumed))
    return findings


def _ran_out_logged(
    index: SnapshotIndex, line: ErrorLine, port_range: tuple[int, int], assumed: bool
) -> Finding:
    """The error line names the ports ("no free ports"): a connect() of the process that
    logged it found every local port toward its destination taken. The paste's outgoing
    connections from the range (a listing of them, often cut short) say in which state they
    hold the ports; the line says it ran out, whatever their number."""
    low, high = port_range
    outgoing = [
        sock
        for sock in index.snapshot.sockets
        if sock.state not in _NOT_OUTGOING
        and sock.local.port is not None
        and low <= sock.local.port <= high
    ]
    states = Counter(sock.state for sock in outgoing)
    destinations = Counter(destination_text(destination(sock.remote)) for sock in outgoing)
    unchecked = [
        "which destination ran out: the line does not name it; the connections per "
        "destination against the port range settle it",
        "whether ports are still short: the line says they were when it was printed",
    ]
    pid = line.pid
    if pid is None and len(index.processes) == 1:
        pid = next(iter(index.processes))
        unchecked.insert(
            0,
            f"that the line is pid {pid}'s: the paste names no other process, and the line "
            "does not say whose it is",
        )
    holder = who(index, (pid,)) if pid is not None else "a process on this host"
    evidence = [
        error_evidence(
            line, "connect() found no free local port (EADDRNOTAVAIL): the supply ran out"
        ),
        Evidence(
            "ip_local_port_range",
            f"{low}-{high}",
            f"{number(high - low + 1)} ports per destination"
            + (" (default assumed)" if assumed else ""),
        ),
    ]
    shown = ""
    if outgoing:
        states_text = ", ".join(f"{number(n)} {state.value}" for state, n in states.most_common())
        toward = ", ".join(name for name, _ in destinations.most_common(3))
        partial = bool(index.snapshot.elisions)
        evidence.append(
            Evidence(
                "outgoing_listed",
                len(outgoing),
                f"connections from the port range in the paste ({states_text}), toward "
                f"{toward}" + ("; the listing is cut short, so a floor" if partial else ""),
            )
        )
        shown = (
            f" The paste lists {number(len(outgoing))} of the connections holding such ports "
            f"({states_text}, toward {toward})"
            + (", a part of the listing only" if partial else "")
            + "."
        )
    return Finding(
        code=PORTS_EXHAUSTED_LOGGED,
        severity=Severity.CRITICAL,
        state=states.most_common(1)[0][0] if outgoing else None,
        blame=Blame.LOCAL_APPLICATION,
        subject=process_subject(index, (pid,)) if pid is not None else Subject(SubjectKind.HOST),
        count=len(outgoing),
        summary=(
            f"The paste's own log line says {holder} found no free local port for a new "
            "connection ('no free ports', EADDRNOTAVAIL from connect()): the ports of "
            f"ip_local_port_range toward a destination it connects to are all held, so its new "
            "connections fail until some close." + shown
        ),
        evidence=tuple(evidence),
        next_steps=(
            f"ss -tan '( sport >= :{low} and sport <= :{high} )' | awk 'NR>1 {{print $5}}' | "
            "sort | uniq -c | sort -rn | head   # connections per destination",
            "sysctl net.ipv4.ip_local_port_range",
            "Each (source address, destination address, destination port) has its own supply: "
            "reuse connections where the protocol allows, or give the connections more "
            "destination addresses or ports, or more source addresses; a wider port range only "
            "buys room.",
        ),
        unchecked=tuple(unchecked),
    )


def _unavailable(line: ErrorLine, port_range: tuple[int, int], assumed: bool) -> Finding:
    """The error line alone: nothing in the paste fills a supply of ports."""
    low, high = port_range
    return Finding(
        code=PORTS_UNAVAILABLE_LOGGED,
        severity=Severity.WARNING,
        state=None,
        blame=Blame.LOCAL_APPLICATION,
        subject=Subject(kind=SubjectKind.HOST),
        count=0,
        summary=(
            "The paste's own error line says a connect() or bind() found no local address or "
            "port to use ('cannot assign requested address', EADDRNOTAVAIL): most often the "
            "ephemeral ports toward one destination are all taken by connections opened per "
            "request, but the paste shows no such pile, so an address that is not this "
            "host's is as likely."
        ),
        evidence=(
            error_evidence(line, "a connect() or bind() failed with EADDRNOTAVAIL"),
            Evidence(
                "ip_local_port_range",
                f"{low}-{high}",
                f"{number(high - low + 1)} ports" + (" (default assumed)" if assumed else ""),
            ),
        ),
        next_steps=(
            "ss -tan | awk 'NR>1 {print $5}' | sed 's/:[0-9]*$//' | sort | uniq -c | sort -rn "
            "| head   # sockets per remote host",
            "sysctl net.ipv4.ip_local_port_range",
            "ip -brief address   # is the address the program binds to this host's?",
        ),
        unchecked=(
            "which it was: the sockets toward the destination the program connects to, "
            "against the port range, tell ports used up from an address not on this host",
        ),
    )


def _finding(
    index: SnapshotIndex,
    key: _Key,
    count: int,
    states: Counter[TcpState],
    holders: Counter[tuple[int, ...]] | None,
    usable: int,
    port_range: tuple[int, int],
    assumed: bool,
    reserved: int,
    severity: Severity,
) -> Finding:
    local_address, local_name, dest = key
    local = local_name or str(local_address)
    severity, ran_out = ports_ran_out(index, severity)
    target = destination_text(dest)
    left = max(usable - count, 0)
    pids = holders.most_common(1)[0][0] if holders else ()
    client = who(index, pids) if pids else "This host"  # it begins the summaries
    states_text = ", ".join(
        f"{number(n)} {state.value}" for state, n in sorted(states.items(), key=lambda i: -i[1])
    )
    subject = Subject(
        kind=SubjectKind.PEER,
        pid=pids[0] if pids else None,
        process=index.process_name(pids[0]) if pids else None,
        endpoint=target,
        pids=pids,
        address=dest,
    )
    hidden = [name for name in (local_name, dest.name) if name is not None and hides_host(name)]
    if hidden:
        # The mask may stand for several hosts, each with its own supply of ports.
        shown = ", ".join(repr(name) for name in hidden)
        return Finding(
            code=ADDRESS_HIDDEN,
            severity=Severity.INFO,
            state=None,
            blame=Blame.LOCAL_APPLICATION,
            subject=subject,
            count=count,
            summary=(
                f"{client} holds {number(count)} connections from {local} to {target} "
                f"({states_text}); one destination's share of {number(usable)} usable "
                f"ephemeral ports would be {percent(count / usable)}, but the paste shows "
                f"{shown} where the address was, which may stand for several hosts, so "
                "whether connects to one of them run out of ports could not be told."
            ),
            evidence=(
                Evidence("ports_taken", count, f"from {local} to {target}: {states_text}"),
                Evidence("ports_usable", usable, "the supply of one destination"),
                Evidence("address_hidden", shown, "masked, a placeholder, or cut short"),
            ),
            next_steps=(
                "ss -tan | awk 'NR>1 {print $4, $5}' | sed 's/:[0-9]*$//' | sort | uniq -c | "
                "sort -rn | head   # per local address and remote host, unmasked",
            ),
            unchecked=(
                "which hosts these connections go to: the paste hides the address, and the "
                "port supply is per (local address, remote address, remote port)",
            ),
        )
    if left == 0:
        outcome = (
            f"every usable port is taken, so the next connect() from {local} to {target} "
            "fails with EADDRNOTAVAIL"
        )
    else:
        outcome = (
            f"{plural(left, 'port')} {'is' if left == 1 else 'are'} left; the connect() after "
            f"{number(left)} more fails with EADDRNOTAVAIL unless some of these close"
        )
    low, high = port_range
    reuse_note = (
        " tcp_tw_reuse can give TIME_WAIT's ports out again, not the others'."
        if states.get(TcpState.TIME_WAIT)
        else ""
    )
    evidence = [
        Evidence("ports_taken", count, f"from {local} to {target}: {states_text}"),
        Evidence("ports_usable", usable, f"{percent(count / usable)} taken"),
        Evidence(
            "ip_local_port_range",
            f"{low}-{high}",
            f"{number(high - low + 1)} ports" + (" (default assumed)" if assumed else ""),
        ),
    ]
    if reserved:
        evidence.append(
            Evidence("ip_local_reserved_ports", reserved, "ports of the range never handed out")
        )
    for state, n in sorted(states.items(), key=lambda item: -item[1]):
        evidence.append(Evidence(state.value.lower(), n, "sockets toward it in this state"))
    if ran_out is not None:
        evidence.append(ran_out)
    return Finding(
        code=PORTS_EXHAUSTING,
        severity=severity,
        state=None,
        blame=Blame.LOCAL_APPLICATION,
        subject=subject,
        count=count,
        summary=(
            f"{client} holds {number(count)} connections from {local} to {target} "
            f"({states_text}), {percent(count / usable)} of the {number(usable)} usable "
            f"ephemeral ports: {outcome}"
            + (PORTS_RAN_OUT if ran_out is not None else "")
            + f".{reuse_note}"
        ),
        evidence=tuple(evidence),
        next_steps=(
            f"ss -tan dst {dest.name or dest.address} | awk '{{print $1}}' | sort | uniq -c",
            "sysctl net.ipv4.ip_local_port_range net.ipv4.ip_local_reserved_ports",
            "Reuse connections (a pool, keep-alive) instead of opening one per request. A wider "
            "ip_local_port_range or more local or remote addresses only buy room.",
        ),
        unchecked=(
            ("ip_local_port_range: not in the snapshot, so the Linux default was assumed",)
            if assumed
            else ()
        )
        + (
            ("ip_local_reserved_ports: not in the snapshot, so none were taken out",)
            if index.snapshot.sysctls.ip_local_reserved_ports is None
            else ()
        ),
    )


RULE = Rule(
    name="ports",
    summary="ephemeral ports toward one destination, held in any state",
    codes=(
        Code(
            PORTS_EXHAUSTING,
            "sockets in any state toward one destination use up its ephemeral ports "
            "(connect() then fails with EADDRNOTAVAIL)",
            (Severity.WARNING, Severity.CRITICAL),
        ),
        Code(
            PORTS_UNAVAILABLE_LOGGED,
            "the paste's own error line: a connect() found no local address or port "
            "(EADDRNOTAVAIL), and no pile of sockets in the paste says which",
            (Severity.WARNING,),
        ),
        Code(
            PORTS_EXHAUSTED_LOGGED,
            "the paste's own log line says a connect() found no free local port ('no free "
            "ports'): the process that logged it ran out of ephemeral ports",
            (Severity.CRITICAL,),
        ),
        Code(
            ADDRESS_HIDDEN,
            "as many sockets toward an address the paste masks or cuts short: whether they "
            "are one destination, and its ports run out, could not be told",
            (Severity.INFO,),
        ),
    ),
    check=check,
    check_table=check_table,
)
