"""Handshakes that do not complete: SYN_RECV on our listeners, SYN_SENT from our clients.

SYN_RECV that piles up on a listener whose accept queue is full is the listener's fault and is
reported by :mod:`listeners`; here only the other case: the queue has room, yet the clients'
final ACKs do not arrive (a SYN flood, or a path that loses them).

SYN_SENT that keeps retransmitting means the destination does not answer. When that
destination is a listener on this very host whose queue is full, the listener is to blame.

Without retransmit counts or timers (a netstat paste) one SYN_SENT says nothing: a connect()
may be a millisecond old. But known local processes (one, or several workers) with attempts
open at once to every address they use on one port -- three or more backends of a set, none of
them connected -- is no coincidence of timing: the whole set does not answer them (the
backends are down, or a firewall or security group between drops the SYNs). That is a warning
naming the backends and the processes.

A paste may hold the client's own error: a connect() that timed out (ETIMEDOUT). A connect()
times out only when its SYN and every retry went unanswered, so beside SYN_SENT rows -- whose
retransmit count may still be low, a new attempt -- it says the peer or the path does not
answer: a warning that says it rests on the line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import Destination, SnapshotIndex, destination, plain_address
from tcphealth.diagnose.rule import Code, Rule, Window
from tcphealth.diagnose.shared import (
    assess_accept_queue,
    error_evidence,
    error_line,
    listener_owner,
    listener_subject,
    listing_elsewhere,
    overflow_counter_evidence,
    owner_next_steps,
    owner_unchecked,
    paste_count_evidence,
    platform_steps,
    reach_elsewhere,
    retransmits_of,
    syn_queue_room,
    widest_counts,
)
from tcphealth.diagnose.timeline import connection_key
from tcphealth.diagnose.wording import (
    destination_text,
    level,
    number,
    pids_key,
    plural,
    process_subject,
    ss_peer_filter,
    top_destinations,
    who,
)
from tcphealth.model import (
    Blame,
    Endpoint,
    ErrorKind,
    Evidence,
    Finding,
    IPAddress,
    Severity,
    Socket,
    Subject,
    SubjectKind,
    TcpState,
)
from tcphealth.states import (
    duration_text,
    explain,
    host_or_default,
    retransmission_budget,
    syn_schedule,
)

_SYN_FIRST_TIMEOUT = 1.0

SYN_RECV_NO_FINAL_ACK = "syn-recv-no-final-ack"
SYN_SENT_UNANSWERED = "syn-sent-unanswered"
SYN_SENT_UNCONFIRMED = "syn-sent-unconfirmed"
SYN_SENT_TO_FULL_LISTENER = "syn-sent-to-full-listener"
SYN_SENT_STUCK = "syn-sent-stuck"  # from a series: unanswered in every sample
SYN_SENT_BACKEND_SET = "syn-sent-backend-set"
SYN_SENT_CONNECT_TIMED_OUT = "syn-sent-connect-timed-out"

# Distinct backends on one port, all in SYN_SENT from known processes, none connected, before
# the attempts are read as the set not answering rather than connects caught mid-flight.
_BACKEND_SET_MIN = 3


# --- SYN_RECV ------------------------------------------------------------------------------


def _syncookies_text(value: int | None) -> str:
    if value is None:
        return "whether syncookies are on is not known"
    return {
        0: "syncookies are off, so a full SYN queue turns new clients away",
        1: "syncookies are on and take over when the SYN queue overflows",
        2: "syncookies are sent for every SYN",
    }.get(value, f"tcp_syncookies is {value}")


def _syn_queue_evidence(index: SnapshotIndex) -> list[Evidence]:
    counters = index.snapshot.counters
    sysctls = index.snapshot.sysctls
    evidence: list[Evidence] = []
    if sysctls.tcp_syncookies is not None:
        evidence.append(
            Evidence(
                "tcp_syncookies", sysctls.tcp_syncookies, _syncookies_text(sysctls.tcp_syncookies)
            )
        )
    if sysctls.tcp_synack_retries is not None:
        budget = retransmission_budget(sysctls.tcp_synack_retries, _SYN_FIRST_TIMEOUT)
        evidence.append(
            Evidence(
                "tcp_synack_retries",
                sysctls.tcp_synack_retries,
                f"a half-open entry expires after {duration_text(budget)}",
            )
        )
    for name, detail in (
        ("SyncookiesSent", "SYN queue overflowed and cookies were sent"),
        ("SyncookiesFailed", "ACKs with a cookie that did not check out"),
        ("TCPReqQFullDrop", "SYNs dropped because the SYN queue was full"),
        ("TCPReqQFullDoCookies", "SYNs answered with a cookie because the SYN queue was full"),
    ):
        value = counters.get(f"TcpExt.{name}")
        if value is not None:
            evidence.append(Evidence(name, value, detail))
    return evidence


@dataclass
class _SynRecvGroup:
    sockets: list[Socket]
    listener: Socket | None


def _syn_recv_findings(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    groups = [
        _SynRecvGroup(sockets, index.listener_by_id[listener_id])
        for listener_id, sockets in index.syn_recv_by_listener.items()
    ]
    # SYN_RECV whose listener is not in the snapshot: grouped by local port, not dropped.
    by_port: dict[int | None, list[Socket]] = {}
    for sock in index.syn_recv_without_listener:
        by_port.setdefault(sock.local.port, []).append(sock)
    groups.extend(_SynRecvGroup(sockets, None) for sockets in by_port.values())

    findings: list[Finding] = []
    sysctls = index.snapshot.sysctls
    for group in groups:
        count = len(group.sockets)
        severity = level(count, thresholds.syn_recv_warning, thresholds.syn_recv_critical)
        if severity is None:
            continue
        unchecked: list[str] = []
        if group.listener is not None:
            queue = assess_accept_queue(group.listener, sysctls)
            if queue.is_full(thresholds):
                continue  # accept-queue overflow: the listener finding says it all
            room = syn_queue_room(group.listener, sysctls)
            if room and count >= room:
                continue  # the SYN queue is full: the syn_queue rule's finding says it
            endpoint = str(group.listener.local)
            subject = listener_subject(index, group.listener)
            pids = listener_owner(group.listener)
            place = f"{endpoint} ({who(index, pids)})" if pids else endpoint
            if queue.backlog is None:
                unchecked.extend(queue.unchecked(endpoint))
                unchecked.append(
                    "whether these SYN_RECV are accept-queue overflow instead: that needs the "
                    "listener's backlog"
                )
            unchecked.extend(owner_unchecked(group.listener))
            port = group.listener.local.port
        else:
            port = group.sockets[0].local.port
            endpoint = f"port {port}"
            place = endpoint
            subject = Subject(kind=SubjectKind.LISTENER, endpoint=endpoint)
            unchecked.append(f"the listener on {endpoint}: it is not in the snapshot")
        sources: Counter[Destination] = Counter()
        source_hosts: set[IPAddress] = set()
        retransmitted = 0
        for sock in group.sockets:
            sources[destination(sock.remote)] += 1
            source_hosts.add(plain_address(sock.remote.address))
            if (retransmits_of(sock) or 0) > 0:
                retransmitted += 1
        syncookies = _syncookies_text(sysctls.tcp_syncookies)
        evidence: list[Evidence] = [
            Evidence("syn_recv", count, "half-open: SYN-ACK sent, final ACK missing"),
            Evidence("source_addresses", len(source_hosts), "distinct client addresses"),
        ]
        if retransmitted:
            evidence.append(Evidence("synack_retransmitted", retransmitted, None))
        evidence.extend(_syn_queue_evidence(index))
        evidence.extend(overflow_counter_evidence(index))
        evidence.extend(top_destinations(sources, name="top_source", limit=3))
        findings.append(
            Finding(
                code=SYN_RECV_NO_FINAL_ACK,
                severity=severity,
                state=TcpState.SYN_RECV,
                blame=Blame.REMOTE_PEER,
                subject=subject,
                count=count,
                summary=(
                    f"{number(count)} handshakes to {place} wait in SYN_RECV from "
                    f"{number(len(source_hosts))} client addresses while the accept queue has "
                    f"room: the clients' final ACKs do not arrive (a SYN flood, or a path that "
                    f"loses them); {syncookies}."
                ),
                evidence=tuple(evidence),
                next_steps=platform_steps(
                    index.snapshot.host.platform,
                    (
                        f"ss -tn state syn-recv '( sport = :{port} )'   # how many sources?",
                        "nstat -az TcpExtSyncookiesSent TcpExtTCPReqQFullDrop "
                        "TcpExtListenOverflows",
                        f"tcpdump -ni any 'tcp port {port} and tcp[tcpflags] & tcp-ack != 0'   "
                        "# do final ACKs arrive?",
                        "sysctl net.ipv4.tcp_syncookies net.ipv4.tcp_max_syn_backlog",
                    ),
                    bsd=(
                        *listing_elsewhere(
                            TcpState.SYN_RECV, port=port, why="how many sources?"
                        ).bsd[:1],
                        "netstat -s -p tcp | grep -i -e syncache -e cookie   # the SYN cache "
                        "and its cookies: still rising?",
                        f"tcpdump -n 'tcp port {port} and tcp[tcpflags] & tcp-ack != 0'   "
                        "# do final ACKs arrive?",
                    ),
                    windows=(
                        f"Get-NetTCPConnection -State SynReceived -LocalPort {port} | "
                        "Group-Object RemoteAddress | Sort-Object Count -Descending   "
                        "# many sources: a flood",
                        "netstat -s -p tcp   # Failed Connection Attempts: still rising?",
                    ),
                ),
                unchecked=tuple(unchecked),
            )
        )
    return findings


# --- SYN_SENT ------------------------------------------------------------------------------


@dataclass
class _SynSentGroup:
    stuck: list[Socket] = field(default_factory=list)  # retransmitted enough: no answer
    unknown: list[Socket] = field(default_factory=list)  # the source has no retransmit count
    pids: Counter[tuple[int, ...]] = field(default_factory=Counter)
    max_retransmits: int = 0


def _syn_sent_findings(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    groups: dict[Destination, _SynSentGroup] = {}
    for sock in index.sockets(TcpState.SYN_SENT):
        retransmits = retransmits_of(sock)
        if retransmits is not None and retransmits < thresholds.syn_sent_min_retransmits:
            continue  # a connect() in its first seconds: normal
        dest = destination(sock.remote)
        group = groups.get(dest)
        if group is None:
            group = groups[dest] = _SynSentGroup()
        if retransmits is None:
            group.unknown.append(sock)
        else:
            group.stuck.append(sock)
            group.max_retransmits = max(group.max_retransmits, retransmits)
        group.pids[pids_key(sock.pids)] += 1
    findings: list[Finding] = []
    in_sets: set[Destination] = set()
    for (port, pids), dests in _backend_sets(index, groups).items():
        findings.append(_backend_set_finding(index, port, pids, dests, groups))
        in_sets.update(dests)
    for dest, group in groups.items():
        if dest in in_sets:
            continue
        finding = _syn_sent_finding(index, dest, group, thresholds)
        if finding is not None:
            findings.append(finding)
    return findings


def _backend_sets(
    index: SnapshotIndex, groups: dict[Destination, _SynSentGroup]
) -> dict[tuple[int, tuple[int, ...]], list[Destination]]:
    """Per port (with the processes attempting): the destinations whose every attempt has no
    retransmit count and a known local owner, when there are enough of them and none of those
    processes is connected to that port anywhere."""
    candidates: dict[int, list[Destination]] = {}
    owners: dict[int, set[int]] = {}
    for dest, group in groups.items():
        if group.stuck or not group.unknown or dest.port is None or dest.name is not None:
            continue  # judged by retransmits, or a host the paste did not give as an address
        if any(not sock.pids for sock in group.unknown):
            continue  # every attempt from a known local process
        if index.is_local(dest.address) and index.listener_for(dest) is not None:
            continue  # a listener here: its queue is the story (below)
        candidates.setdefault(dest.port, []).append(dest)
        owners.setdefault(dest.port, set()).update(p for s in group.unknown for p in s.pids)
    sets: dict[tuple[int, tuple[int, ...]], list[Destination]] = {}
    for port, dests in candidates.items():
        pids = tuple(sorted(owners[port]))
        if len(dests) < _BACKEND_SET_MIN:
            continue
        connected = any(
            sock.remote.port == port and set(sock.pids) & set(pids)
            for sock in index.sockets(TcpState.ESTABLISHED)
        )
        if not connected:
            sets[(port, pids)] = sorted(dests, key=destination_text)
    return sets


_BACKEND_SET_FIX = (
    "Check the security groups or firewall rules between this host and the set, and whether "
    "the service runs on the backends."
)
_UNANSWERED_FIX = (
    "Check the firewall rules on both sides and whether the service there runs. Give the "
    "client a connect timeout shorter than the kernel's."
)


def _backend_set_finding(
    index: SnapshotIndex,
    port: int,
    pids: tuple[int, ...],
    dests: list[Destination],
    groups: dict[Destination, _SynSentGroup],
) -> Finding:
    client = who(index, pids)
    attempts = sum(len(groups[dest].unknown) for dest in dests)
    backends = ", ".join(destination_text(dest) for dest in dests)
    # A paste's own count of SYN_SENT beyond the rows it lists (an awk histogram above an
    # elided listing): the listing is a sample, and the finding says how much it leaves out.
    listed = len(index.sockets(TcpState.SYN_SENT))
    summarised = index.snapshot.state_counts.get(TcpState.SYN_SENT.value, 0)
    counted_text = ""
    counted_evidence: list[Evidence] = []
    if summarised > listed:
        command = widest_counts(index.snapshot.reported).get(TcpState.SYN_SENT)
        selection = command.selects if command is not None else None
        counted_text = (
            f" The paste's own count puts {number(summarised)} connections in SYN_SENT"
            + (f" ({selection})" if selection else "")
            + f"; the listing shows {number(listed)}."
        )
        counted_evidence = (
            paste_count_evidence(command)
            if command is not None and command.sockets == summarised
            else [Evidence("syn_sent_summary", summarised, "a per-state count in the source")]
        )
    return Finding(
        code=SYN_SENT_BACKEND_SET,
        severity=Severity.WARNING,
        state=TcpState.SYN_SENT,
        blame=Blame.NETWORK,
        subject=process_subject(index, pids),
        count=attempts,
        summary=(
            f"{plural(attempts, 'connection attempt')} from {client} wait at once on "
            f"{number(len(dests))} backends on port {port} ({backends}) -- every one the "
            "listing shows in use there -- and none of them is connected: the set does not "
            "answer; the backends are down, or a firewall or security group between drops the "
            f"SYNs.{counted_text}"
        ),
        evidence=(
            Evidence("backends", len(dests), backends),
            Evidence("syn_sent", attempts, "attempts without a retransmit count in the source"),
            Evidence(
                "connected_on_port",
                0,
                f"ESTABLISHED from {client} to port {port} in the source",
            ),
            *counted_evidence,
        ),
        next_steps=platform_steps(
            index.snapshot.host.platform,
            (
                f"ss -tnpo state syn-sent '( dport = :{port} )'   # retransmit timers of the "
                "attempts",
                f"nc -vz -w 3 {dests[0].address} {port}   # one backend by hand",
                f"traceroute -T -p {port} {dests[0].address}   # where do the SYNs stop?",
                _BACKEND_SET_FIX,
            ),
            elsewhere=listing_elsewhere(TcpState.SYN_SENT, port=port, local_port=False)
            .plus(reach_elsewhere(str(dests[0].address), port))
            .then(_BACKEND_SET_FIX),
        ),
        unchecked=(
            "whether the attempts are old: the source gives no retransmit count or timer, so "
            "the finding rests on every backend of the set waiting at once",
            "connections the listing may not show: a filtered listing (grep, awk) can hide "
            "ones to this port that did connect",
        ),
    )


def _syn_sent_finding(
    index: SnapshotIndex, dest: Destination, group: _SynSentGroup, thresholds: Thresholds
) -> Finding | None:
    address, port = dest.address, dest.port
    target = destination_text(dest)
    clients = [pids for pids, _ in group.pids.most_common() if pids]
    client_pids = clients[0] if len(clients) == 1 else ()
    client = who(index, client_pids) if client_pids else "Local clients"
    sysctls = index.snapshot.sysctls
    retries, assumed_retries = host_or_default(sysctls, "tcp_syn_retries")
    schedule = syn_schedule(retries, sysctls.tcp_syn_linear_timeouts)
    give_up = duration_text(schedule.give_up_seconds)

    evidence: list[Evidence] = []
    if group.stuck:
        evidence.append(Evidence("syn_sent_retransmitting", len(group.stuck), None))
        evidence.append(Evidence("max_retransmits", group.max_retransmits, "SYNs resent"))
    if group.unknown:
        evidence.append(
            Evidence("syn_sent_unchecked", len(group.unknown), "no retransmit count in source")
        )
    evidence.append(
        Evidence(
            "tcp_syn_retries",
            retries,
            f"connect() fails after {give_up}" + (" (default assumed)" if assumed_retries else ""),
        )
    )
    if schedule.spaced_evenly:
        # max_retransmits above may pass tcp_syn_retries: the kernel counts time, not SYNs.
        evidence.append(
            Evidence(
                "tcp_syn_linear_timeouts",
                sysctls.tcp_syn_linear_timeouts,
                f"{schedule.retransmissions} SYNs resent before it fails, "
                f"the first {schedule.spaced_evenly} one second apart",
            )
        )
    for name in ("TCPSynRetrans", "TCPAbortOnTimeout"):
        value = index.snapshot.counters.get(f"TcpExt.{name}")
        if value is not None:
            evidence.append(Evidence(name, value, "host-wide since boot"))
    if len(clients) > 1:
        evidence.append(Evidence("client_processes", len(clients), None))

    count = len(group.stuck) + len(group.unknown)
    unchecked: list[str] = []
    if group.unknown:
        these = (
            "this attempt is"
            if len(group.unknown) == 1
            else (f"these {number(len(group.unknown))} attempts are")
        )
        unchecked.append(
            f"whether {these} stuck or just starting: the source has no retransmit count or "
            "timer for them"
        )

    # A destination on this host: the listener there may be the one not answering.
    every_client = tuple(sorted({pid for pids in group.pids for pid in pids}))
    listener = index.listener_for(Endpoint(address, port)) if index.is_local(address) else None
    if listener is not None:
        queue = assess_accept_queue(listener, sysctls)
        if queue.is_full(thresholds) or (queue.backlog is None and queue.queued):
            # Connections wait on a listener whose limit the source does not give (/proc, a
            # netstat paste): it is the likely cause, not a remote peer.
            return _syn_sent_to_full_listener(
                index,
                listener,
                queue.queued,
                count,
                client,
                target,
                evidence,
                thresholds,
                every_client,
                likely=not queue.is_full(thresholds),
            )
        if queue.backlog is not None:
            evidence.append(
                Evidence("local_listener", str(listener.local), "a listener here, queue not full")
            )
        else:
            evidence.append(
                Evidence(
                    "local_listener",
                    str(listener.local),
                    "a listener here; the source gives neither its queue nor its backlog",
                )
            )
            unchecked.append(
                f"whether the accept queue of {listener.local} is full: the source does not "
                f"give it (ss -ltn 'sport = :{listener.local.port}' shows Recv-Q and Send-Q)"
            )

    if group.stuck:
        severity = level(
            len(group.stuck), thresholds.syn_sent_warning, thresholds.syn_sent_critical
        )
        if severity is None:
            return None
        summary = (
            f"{client} cannot reach {target}: {plural(len(group.stuck), 'connection attempt')} "
            f"got no answer after {group.max_retransmits} or more SYN retransmissions -- the "
            f"host is down or a firewall drops the SYN; connect() fails after {give_up}."
        )
        code, blame = SYN_SENT_UNANSWERED, Blame.REMOTE_PEER
    else:
        severity = Severity.INFO
        summary = (
            f"{client} has {plural(len(group.unknown), 'connection attempt')} to {target} "
            "waiting for an answer; the source shows no retransmissions, so whether "
            f"{'it is' if len(group.unknown) == 1 else 'they are'} stuck could not be checked."
        )
        code, blame = SYN_SENT_UNCONFIRMED, Blame.REMOTE_PEER
    return Finding(
        code=code,
        severity=severity,
        state=TcpState.SYN_SENT,
        blame=blame,
        subject=replace(
            process_subject(index, client_pids, SubjectKind.PEER, address=dest, endpoint=target),
            pids=client_pids or every_client,
        ),
        count=count,
        summary=summary,
        evidence=tuple(evidence),
        next_steps=platform_steps(
            index.snapshot.host.platform,
            (
                f"ss -tnpo state syn-sent {ss_peer_filter(address, port)}",
                f"ip route get {address}",
                f"traceroute -T -p {port} {address}   # where do the SYNs stop?"
                if port is not None
                else f"traceroute -T {address}",
                _UNANSWERED_FIX,
            ),
            elsewhere=listing_elsewhere(TcpState.SYN_SENT, address=str(address))
            .plus(reach_elsewhere(str(address), port))
            .then(_UNANSWERED_FIX),
        ),
        unchecked=tuple(unchecked),
    )


def _syn_sent_to_full_listener(
    index: SnapshotIndex,
    listener: Socket,
    queued: int | None,
    count: int,
    client: str,
    target: str,
    evidence: list[Evidence],
    thresholds: Thresholds,
    clients: tuple[int, ...],
    *,
    likely: bool = False,
) -> Finding | None:
    """SYN_SENT toward a listener on this host whose accept queue is full -- or, ``likely``,
    holds connections toward a backlog the source does not give."""
    severity = level(count, thresholds.syn_sent_warning, thresholds.syn_sent_critical)
    if severity is None:
        return None
    pids = listener_owner(listener)
    owner = who(index, pids) if pids else "the listener's owner"
    evidence = [
        *evidence,
        Evidence("listener", str(listener.local), "on this host"),
        Evidence("accept_queue", queued, "connections waiting for accept()"),
        *overflow_counter_evidence(index),
    ]
    unchecked = owner_unchecked(listener)
    if likely:
        summary = (
            f"{client} cannot connect to {target} on this same host, most likely because "
            f"{owner} does not accept on {listener.local}: {number(queued or 0)} connections "
            f"wait in its accept queue, whose limit the source does not give, and "
            f"{number(count)} attempts wait in SYN_SENT."
        )
        unchecked = (
            *unchecked,
            f"whether the accept queue of {listener.local} is full: the source does not give "
            f"its backlog (ss -ltn 'sport = :{listener.local.port}' shows it as Send-Q)",
        )
    else:
        summary = (
            f"{client} cannot connect to {target} on this same host: {owner} does not accept "
            f"on {listener.local} and its full accept queue drops the SYNs, so "
            f"{number(count)} attempts wait in SYN_SENT."
        )
    subject = listener_subject(index, listener)
    # The clients are what the finding is about too: never "nothing wrong" beside it.
    extra = tuple(pid for pid in clients if pid not in subject.pids)
    return Finding(
        code=SYN_SENT_TO_FULL_LISTENER,
        severity=severity,
        state=TcpState.SYN_SENT,
        blame=Blame.LOCAL_APPLICATION,
        subject=replace(subject, pids=(*subject.pids, *extra)),
        count=count,
        summary=summary,
        evidence=tuple(evidence),
        next_steps=owner_next_steps(pids, listener.local.port, index.snapshot.host.platform),
        unchecked=unchecked,
    )


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    return _syn_recv_findings(index, thresholds) + _connect_timed_out(
        index, _syn_sent_findings(index, thresholds)
    )


# Findings that already judge SYN_SENT as unanswered (or its cause found): a logged timeout
# adds nothing they need.
_SYN_SENT_JUDGED = frozenset({SYN_SENT_UNANSWERED, SYN_SENT_BACKEND_SET, SYN_SENT_TO_FULL_LISTENER})


def _connect_timed_out(index: SnapshotIndex, findings: list[Finding]) -> list[Finding]:
    """SYN_SENT rows beside the paste's own line saying a connect() timed out (ETIMEDOUT): a
    connect() times out only when the SYN and all its retries got no answer -- neither a
    SYN-ACK nor a RST -- so the peer (or the path to it) does not answer; the attempts
    waiting now are most likely more of the same. It replaces the "waiting, could not be
    checked" notes of those attempts; where retransmits already judged them, nothing is added."""
    line = error_line(index, ErrorKind.CONNECT_TIMEOUT)
    waiting = index.sockets(TcpState.SYN_SENT)
    if line is None or not waiting or any(f.code in _SYN_SENT_JUDGED for f in findings):
        return findings
    kept = [f for f in findings if f.code != SYN_SENT_UNCONFIRMED]
    destinations = Counter(destination(sock.remote) for sock in waiting)
    targets = [dest for dest, _ in destinations.most_common()]
    shown = ", ".join(destination_text(dest) for dest in targets[:3])
    if len(targets) > 3:
        shown += f" and {plural(len(targets) - 3, 'other')}"
    every = tuple(sorted({pid for sock in waiting for pid in sock.pids}))
    holders = {pids_key(sock.pids) for sock in waiting} - {()}
    client_pids = holders.pop() if len(holders) == 1 else ()
    client = who(index, client_pids) if client_pids else "This host"
    sysctls = index.snapshot.sysctls
    retries, assumed = host_or_default(sysctls, "tcp_syn_retries")
    give_up = duration_text(syn_schedule(retries, sysctls.tcp_syn_linear_timeouts).give_up_seconds)
    if len(targets) == 1:
        (dest,) = targets
        subject = replace(
            process_subject(index, client_pids, SubjectKind.PEER, address=dest, endpoint=shown),
            pids=client_pids or every,
        )
    else:
        subject = Subject(kind=SubjectKind.HOST, pids=every)
    evidence = [
        error_evidence(line, "a connect() gave up after its SYN retries got no answer"),
        Evidence("syn_sent", len(waiting), f"connection attempts waiting now, toward {shown}"),
        Evidence(
            "tcp_syn_retries",
            retries,
            f"connect() times out after {give_up}" + (" (default assumed)" if assumed else ""),
        ),
    ]
    # The peer as the paste named it where it gave a name (an address then stands in for it).
    address, port = targets[0].name or str(targets[0].address), targets[0].port
    peer_filter = f"dst {address}" + (f" '( dport = :{port} )'" if port is not None else "")
    kept.append(
        Finding(
            code=SYN_SENT_CONNECT_TIMED_OUT,
            severity=Severity.WARNING,
            state=TcpState.SYN_SENT,
            blame=Blame.REMOTE_PEER,
            subject=subject,
            count=len(waiting),
            summary=(
                f"{client} has {plural(len(waiting), 'connection attempt')} toward {shown} "
                "waiting in SYN_SENT, and the paste's own log line says a connect() timed out "
                "(ETIMEDOUT): its SYN and every retry got no answer, neither a SYN-ACK nor a "
                "reset. The peer does not answer -- it is down or drops the SYNs, or a firewall "
                f"on the way does; each attempt fails after {give_up}."
            ),
            evidence=tuple(evidence),
            next_steps=platform_steps(
                index.snapshot.host.platform,
                (
                    f"ss -tnpo state syn-sent {peer_filter}   # retransmits climbing?",
                    f"traceroute -T -p {port} {address}   # where do the SYNs stop?"
                    if port is not None
                    else f"traceroute -T {address}",
                    _UNANSWERED_FIX,
                ),
                elsewhere=listing_elsewhere(TcpState.SYN_SENT, address=address)
                .plus(reach_elsewhere(address, port))
                .then(_UNANSWERED_FIX),
            ),
            unchecked=(
                f"that the connect() that timed out went to {shown}: the line does not say "
                "(or says in its own words) where it connected; the attempts shown are the "
                "ones waiting now",
                "whether the peer or the path drops the SYNs: a capture at the peer shows "
                "whether they arrive",
            ),
        )
    )
    return kept


# --- over a series: SYN_SENT that stays -----------------------------------------------------------

# Replaced by the stuck finding when their sockets stayed through the window.
_SNAPSHOT_SYN_SENT_CODES = frozenset({SYN_SENT_UNANSWERED, SYN_SENT_UNCONFIRMED})


def over_series(window: Window, findings: list[Finding], thresholds: Thresholds) -> list[Finding]:
    """SYN_SENT that stays over several samples is a peer that does not answer; one that came
    and went was a blip and says nothing."""
    if window.samples < thresholds.persist_samples:
        return findings
    stuck: dict[Destination, list[Socket]] = {}
    for sock in window.latest.sockets:
        if sock.state is TcpState.SYN_SENT and window.stayed(sock):
            stuck.setdefault(destination(sock.remote), []).append(sock)
    if not stuck:
        return findings
    result: list[Finding] = []
    for finding in findings:
        target = finding.subject.address
        if finding.state is TcpState.SYN_SENT and target is not None and target in stuck:
            if finding.code in _SNAPSHOT_SYN_SENT_CODES:
                continue  # replaced by the stuck finding below
            evidence = Evidence(
                "stayed", len(stuck.pop(target)), f"in SYN_SENT through {window.span_text()}"
            )
            result.append(replace(finding, evidence=(*finding.evidence, evidence)))
            continue
        result.append(finding)
    for dest, sockets in stuck.items():
        result.append(_syn_sent_stuck(window, dest, sockets, thresholds))
    return result


def _syn_sent_stuck(
    window: Window, dest: Destination, sockets: list[Socket], thresholds: Thresholds
) -> Finding:
    target = destination_text(dest)
    count = len(sockets)
    holders = Counter(pids_key(sock.pids) for sock in sockets if sock.pids)
    pids = holders.most_common(1)[0][0] if len(holders) == 1 else ()
    names = {process.pid: process.name for process in window.latest.processes}
    process = names.get(pids[0]) if pids else None
    client = f"pid {pids[0]}" + (f" ({process})" if process else "") if pids else "Local clients"
    severity = Severity.CRITICAL if count >= thresholds.syn_sent_critical else Severity.WARNING
    limit = explain(TcpState.SYN_SENT, window.latest.sysctls).limit_seconds
    oldest = max(window.ages[connection_key(sock)].observed_seconds for sock in sockets)
    return Finding(
        code=SYN_SENT_STUCK,
        severity=severity,
        state=TcpState.SYN_SENT,
        blame=Blame.REMOTE_PEER,
        subject=Subject(
            kind=SubjectKind.PEER,
            pid=pids[0] if pids else None,
            process=process,
            endpoint=target,
            pids=pids,
            address=dest,
        ),
        count=count,
        summary=(
            f"{client} has {plural(count, 'connection attempt')} to {target} that stayed "
            f"unanswered through the whole {window.span_text()}: the peer is down or a "
            "firewall drops the SYNs -- a dead peer, not a passing blip."
        ),
        evidence=(
            Evidence("stayed", count, f"in SYN_SENT in all {window.samples} samples"),
            Evidence("oldest_s", round(oldest, 1), "seen in SYN_SENT for at least this long"),
            Evidence(
                "syn_retry_budget_s",
                None if limit is None else round(limit),
                "the kernel gives up on each attempt after this",
            ),
        ),
        next_steps=(
            f"ss -tnpo state syn-sent dst {target}",
            f"traceroute -T -p {target.rsplit(':', 1)[-1]} {target.rsplit(':', 1)[0].strip('[]')}"
            if ":" in target
            else f"traceroute -T {target}",
        ),
    )


_LEVELS = (Severity.WARNING, Severity.CRITICAL)

RULE = Rule(
    name="handshake",
    summary="SYN_RECV without final ACKs; SYN_SENT that gets no answer",
    codes=(
        Code(
            SYN_RECV_NO_FINAL_ACK,
            "handshakes wait in SYN_RECV with room in the accept queue: clients' final ACKs "
            "do not arrive",
            _LEVELS,
        ),
        Code(
            SYN_SENT_UNANSWERED,
            "connection attempts resent their SYN several times and got no answer",
            _LEVELS,
        ),
        Code(
            SYN_SENT_UNCONFIRMED,
            "connection attempts wait for an answer; the source shows no resends to judge by",
            (Severity.INFO,),
        ),
        Code(
            SYN_SENT_TO_FULL_LISTENER,
            "local clients cannot connect to a listener on this host whose accept queue is full",
            _LEVELS,
            explains_counters=("TcpExt.ListenOverflows",),
        ),
        Code(
            SYN_SENT_BACKEND_SET,
            "one process's connection attempts wait at once on every backend it uses on a port, "
            "connected to none: the set does not answer",
            (Severity.WARNING,),
        ),
        Code(
            SYN_SENT_CONNECT_TIMED_OUT,
            "connection attempts wait in SYN_SENT beside the paste's own line saying a "
            "connect() timed out (ETIMEDOUT): the peer, or the path to it, does not answer",
            (Severity.WARNING,),
        ),
        Code(
            SYN_SENT_STUCK,
            "connection attempts to one peer stayed unanswered in every sample",
            _LEVELS,
            from_series=True,
        ),
    ),
    check=check,
    step=over_series,
)
