"""Every network namespace on the host in one live run, and who lives in each.

sock_diag dumps only the caller's namespace, so a run that covers the host:

1. **finds the namespaces**: the union of ``/proc/*/ns/net`` (one ``readlink`` per process,
   ``net:[INODE]``, deduplicated by inode) and the bind mounts under ``/run/netns`` (``ip
   netns add``, and the ``cni-*`` ones a container runtime leaves there, which may have no
   process in them). Pid 1's is the host's.
2. **dumps each other namespace in a forked child** that ``setns()``s into it: the same
   netlink request as for the caller's (tcp_info included), and the namespace's own sysctls
   and counters (both are per namespace and follow the namespace of the reader). At most
   :data:`WORKERS` children, each taking its share of the namespaces in turn; they are
   forked before the /proc/*/fd walk starts (so the walk can leave them out), close every
   descriptor they inherited, and are reaped before anything is printed. A namespace gone
   before its child got to it is a note. Where entering is refused, the sockets are read from
   ``/proc/PID/net/tcp{,6}`` of a process in the namespace instead (no tcp_info, no sysctls).
3. **one /proc/*/fd walk** for the whole host attributes every socket: socket inodes are
   unique across namespaces. Each socket carries its namespace's inode; sockets of two
   namespaces are never merged, and the credit of a not-yet-accepted socket to its listener
   stays inside the namespace.
4. **names each namespace and process**: ``/proc/PID/cgroup`` gives the container or pod of
   every process (:mod:`.containers`); a namespace whose processes all belong to one pod (or
   one container) is labelled with it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import selectors
import socket
import struct
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NoReturn, cast

from tcphealth import gcpause
from tcphealth.errors import ProcParseError
from tcphealth.model import (
    Container,
    Family,
    NetNamespace,
    NetnsKind,
    Process,
    Snapshot,
    Socket,
    SocketDraft,
    Sysctls,
)
from tcphealth.sources import background_scan, children, containers, dump_relay, netlink, procfs
from tcphealth.sources.netns import NETNS_RUN_DIR, NetnsError, setns

# Children dumping other namespaces at once. Each enters its namespaces one after another, so
# a host with 500 namespaces never has more than this many extra processes.
WORKERS = 2
# A child that sends nothing for this long is stopped; the namespaces it had left are noted.
SILENCE_TIMEOUT = 2 * netlink.DUMP_TIMEOUT

_FRAME = struct.Struct("=QBI")  # namespace inode, kind, length of the payload
_READ, _REFUSED, _GONE = 0, 1, 2


@dataclass
class Found:
    """One namespace found: the processes living in it and the names bound to it."""

    inode: int
    pids: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def enter_path(self, netns_dir: str) -> str | None:
        if self.names:
            return os.path.join(netns_dir, self.names[0])
        if self.pids:
            return f"/proc/{self.pids[0]}/ns/net"
        return None


@dataclass
class Discovery:
    """The namespaces of the host as this run could see them."""

    found: dict[int, Found]
    own: int | None  # the caller's
    host: int | None  # pid 1's; the caller's where pid 1's cannot be read (see discover)
    netns_of_pid: dict[int, int]
    unreadable: int = 0  # processes whose namespace link could not be read (not root)

    @property
    def others(self) -> list[Found]:
        return [found for inode, found in sorted(self.found.items()) if inode != self.own]


def _inode_of_link(target: str) -> int | None:
    """``net:[4026531833]`` -> 4026531833."""
    if (
        target.startswith("net:[")
        and target.endswith("]")
        and target[5:-1].isascii()
        and target[5:-1].isdigit()
    ):
        return int(target[5:-1])
    return None


def discover(proc_root: Path = Path("/proc"), netns_dir: str = NETNS_RUN_DIR) -> Discovery:
    """Every network namespace a process lives in or a name is bound to.

    The host's is pid 1's. Where pid 1's link cannot be read (a sandbox that hides pid 1 even
    from root), it is kthreadd's (pid 2: kernel threads live in the host's namespace); where
    that cannot be read either, the caller's is taken for the host's unless a /run/netns name
    is bound to it (then it was entered with ``ip netns exec``, and the lowest readable pid's
    is taken)."""
    found: dict[int, Found] = {}
    netns_of_pid: dict[int, int] = {}
    unreadable = 0
    readlink = os.readlink
    with os.scandir(proc_root) as entries:
        pids = sorted(
            int(entry.name) for entry in entries if entry.name.isascii() and entry.name.isdigit()
        )
    for pid in pids:
        try:
            inode = _inode_of_link(readlink(f"{proc_root}/{pid}/ns/net"))
        except FileNotFoundError:
            continue  # exited
        except OSError:
            unreadable += 1
            continue
        if inode is None:
            continue
        netns_of_pid[pid] = inode
        entry = found.get(inode)
        if entry is None:
            entry = found[inode] = Found(inode)
        entry.pids.append(pid)
    try:
        own: int | None = _inode_of_link(readlink(f"{proc_root}/thread-self/ns/net"))
        nsfs = os.stat(f"{proc_root}/thread-self/ns/net").st_dev
    except OSError:
        own, nsfs = None, None
    for name in _bound_names(netns_dir):
        try:
            info = os.stat(os.path.join(netns_dir, name))
        except OSError:
            continue
        if nsfs is None or info.st_dev != nsfs:
            continue  # a file left where a namespace was once bound, not a namespace
        entry = found.get(info.st_ino)
        if entry is None:
            entry = found[info.st_ino] = Found(info.st_ino)
        entry.names.append(name)
    if own is not None and own not in found:
        found[own] = Found(own)
    host = netns_of_pid.get(1)
    if host is None:
        host = _kernel_threads_netns(proc_root, netns_of_pid)
    if host is None and own is not None and not found[own].names:
        host = own
    elif host is None and netns_of_pid:
        # Entered with ip netns exec and pid 1 hidden: the earliest process still readable
        # was started at boot, in the host's namespace.
        host = netns_of_pid[min(netns_of_pid)]
    return Discovery(found, own, host, netns_of_pid, unreadable)


def _kernel_threads_netns(proc_root: Path, netns_of_pid: dict[int, int]) -> int | None:
    """The namespace of kthreadd (pid 2, parent 0, in the host's pid namespace): kernel threads
    all live in the initial network namespace, the host's. Read where pid 1's link is hidden,
    so that a run started by ``unshare -n`` (no name bound) does not take its own namespace
    for the host's."""
    try:
        stat = (proc_root / "2" / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # "2 (kthreadd) S 0 ...": the name in parentheses, then the state and the parent's pid.
    name_end = stat.rfind(")")
    fields = stat[name_end + 1 :].split()
    if stat[stat.find("(") + 1 : name_end] != "kthreadd" or len(fields) < 2 or fields[1] != "0":
        return None
    return netns_of_pid.get(2)


def _bound_names(netns_dir: str) -> list[str]:
    try:
        return sorted(os.listdir(netns_dir))
    except OSError:
        return []


# --- the children that enter the other namespaces ----------------------------------------------


@dataclass
class Dumped:
    """What a child read inside one namespace."""

    dumps: list[bytes | None]  # per family, the reply's bytes; None: the family is not there
    sysctls: Sysctls
    counters: dict[str, int]
    failure: str | None = None  # a dump that failed, said in words


class _Workers:
    """The children dumping other namespaces, and the pipes they answer on."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self.pipes: dict[int, int] = {}  # read end -> child pid
        self.pending: dict[int, list[int]] = {}  # child pid -> inodes it has not answered

    def start(self, targets: Sequence[tuple[int, str]], with_tcp_info: bool) -> None:
        if not targets or not children.can_fork():
            return
        shares = [list(targets[number::WORKERS]) for number in range(WORKERS)]
        for share in shares:
            if not share:
                continue
            read_end, write_end = os.pipe()
            try:
                pid = os.fork()
            except OSError:
                os.close(read_end)
                os.close(write_end)
                continue
            if pid == 0:
                _child(share, write_end, with_tcp_info)
            os.close(write_end)
            self.pids.append(pid)
            self.pipes[read_end] = pid
            self.pending[pid] = [inode for inode, _ in share]

    def frames(self) -> Iterator[tuple[int, int, bytes]]:
        """(inode, kind, payload) as the children send them, until all have ended or one has
        been silent for :data:`SILENCE_TIMEOUT`."""
        buffers = {fd: bytearray() for fd in self.pipes}
        with selectors.DefaultSelector() as selector:
            for fd in self.pipes:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                ready = selector.select(SILENCE_TIMEOUT)
                if not ready:
                    return  # the rest stay pending: the caller notes them
                for key, _ in ready:
                    fd = key.fd
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        selector.unregister(fd)
                        continue
                    buffer = buffers[fd]
                    buffer += chunk
                    while len(buffer) >= _FRAME.size:
                        inode, kind, length = _FRAME.unpack_from(buffer)
                        if len(buffer) < _FRAME.size + length:
                            break
                        payload = bytes(buffer[_FRAME.size : _FRAME.size + length])
                        del buffer[: _FRAME.size + length]
                        pending = self.pending.get(self.pipes[fd], [])
                        if inode in pending:
                            pending.remove(inode)
                        yield inode, kind, payload

    def unanswered(self) -> list[int]:
        return sorted(inode for inodes in self.pending.values() for inode in inodes)

    def stop(self) -> None:
        for fd in self.pipes:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.pipes = {}
        for pid in self.pids:
            children.stop(pid)
        self.pids = []


def _child(targets: Sequence[tuple[int, str]], write_end: int, with_tcp_info: bool) -> NoReturn:
    code = 1
    try:
        # Copies of every descriptor of the parent: not ours to hold (the fd walk must not
        # see this child holding the parent's sockets, and a pipe end held here would keep
        # another child's reader from seeing its end).
        os.closerange(0, write_end)
        os.closerange(write_end + 1, 1 << 20)

        def send(inode: int, kind: int, payload: bytes) -> None:
            dump_relay._write_all(write_end, _FRAME.pack(inode, kind, len(payload)) + payload)

        for inode, path in targets:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as error:
                send(inode, _GONE, (error.strerror or str(error)).encode())
                continue
            try:
                if os.fstat(fd).st_ino != inode:
                    send(inode, _GONE, b"another namespace is there now")
                    continue
                setns(fd, path)
            except NetnsError as error:
                send(inode, _REFUSED, error.problem.encode())
                continue
            finally:
                os.close(fd)
            send(inode, _READ, pickle.dumps(_dump_here(with_tcp_info), pickle.HIGHEST_PROTOCOL))
        code = 0
    except BaseException:  # anything at all: the parent notes what was not answered
        code = 1
    finally:
        os._exit(code)


def _dump_here(with_tcp_info: bool) -> Dumped:
    """Both families' dumps, the sysctls and the counters of the namespace this process is
    in now."""
    dumps: list[bytes | None] = []
    failure: str | None = None
    for family in (socket.AF_INET, socket.AF_INET6):
        request = netlink.build_request(family, 1, with_tcp_info=with_tcp_info)
        reply = bytearray()
        try:
            with socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW, dump_relay.NETLINK_SOCK_DIAG
            ) as chan:
                for datagram in dump_relay.receive(
                    chan, request, netlink.RECEIVE_BUFFER, netlink.DUMP_TIMEOUT
                ):
                    reply += datagram
                    if dump_relay.dump_ended(datagram):
                        break
            dumps.append(bytes(reply))
        except OSError as error:
            if family == socket.AF_INET6 and error.errno == errno.EAFNOSUPPORT:
                dumps.append(None)
                continue
            failure = error.strerror or str(error)
            dumps.append(None)
        except dump_relay.ReceiveFailed as error:
            failure = error.text
            dumps.append(None)
    proc = Path("/proc")
    return Dumped(dumps, procfs.read_sysctls(proc), procfs.read_counters(proc), failure)


# --- the whole host ------------------------------------------------------------------------------


@dataclass
class _Read:
    """One namespace's result, for the snapshot's namespace list."""

    sysctls: Sysctls = field(default_factory=Sysctls)
    counters: dict[str, int] = field(default_factory=dict)
    source: str = "netlink"


def collect_all(
    proc_root: Path = Path("/proc"),
    *,
    with_processes: bool = True,
    with_tcp_info: bool = True,
    node_root: Path = Path("/"),
    netns_dir: str = NETNS_RUN_DIR,
    enter: bool = True,
    discovery: Discovery | None = None,
) -> Snapshot:
    """Every network namespace of the host (see the module's text). ``enter=False`` reads the
    other namespaces through /proc/PID/net/tcp{,6}, as when entering them is refused."""
    taken_at = time.time()
    if discovery is None:
        discovery = discover(proc_root, netns_dir)
    own = discovery.own
    targets: list[tuple[int, str]] = []
    notes: list[str] = []
    for found in discovery.others:
        path = found.enter_path(netns_dir)
        if path is not None:
            targets.append((found.inode, path))
    requests = [
        netlink.build_request(family, 1, with_tcp_info=with_tcp_info)
        for family in (socket.AF_INET, socket.AF_INET6)
    ]
    read: dict[int, _Read] = {}
    refused: list[int] = []
    workers = _Workers()
    with contextlib.ExitStack() as stack:
        stack.callback(workers.stop)
        # The workers first, then the relay, then the walk: the walk leaves out every helper.
        if enter:
            workers.start(targets, with_tcp_info)
        else:
            refused = [inode for inode, _ in targets]
        relay = stack.enter_context(
            dump_relay.started(
                requests, buffer_size=netlink.RECEIVE_BUFFER, timeout=netlink.DUMP_TIMEOUT
            )
        )
        pending: background_scan.PendingScan | None = None
        if with_processes:
            helpers = list(workers.pids)
            if relay is not None and relay.pid is not None:
                helpers.append(relay.pid)
            pending = stack.enter_context(background_scan.started(proc_root, helpers))
        with gcpause.paused():
            drafts = netlink._dump_both_families(with_tcp_info, relay)
            for draft in drafts:
                draft.netns = own
            if own is not None:
                read[own] = _Read(procfs.read_sysctls(proc_root), procfs.read_counters(proc_root))
            if enter and targets and not workers.pids:
                refused = [inode for inode, _ in targets]  # no child could be forked
            for inode, kind, payload in workers.frames():
                if kind == _READ:
                    dumped = _unpickle(payload)
                    if dumped is None:
                        notes.append(f"net:[{inode}]: its reader sent nothing usable; not read")
                        continue
                    _decode_into(drafts, inode, dumped, notes)
                    read[inode] = _Read(dumped.sysctls, dumped.counters)
                elif kind == _REFUSED:
                    refused.append(inode)
                else:
                    notes.append(
                        f"net:[{inode}]: gone before it was read "
                        f"({payload.decode('utf-8', 'replace')})"
                    )
            for inode in workers.unanswered():
                notes.append(f"net:[{inode}]: its reader did not answer in time; not read")
            workers.stop()
            fallback: list[Socket] = []
            for inode in refused:
                _read_through_process(discovery.found[inode], proc_root, fallback, read, notes)
            scan = sorted_owners = None
            if pending is None:
                netlink._finish_all(drafts, None)
            else:
                owners = pending.owners(array("Q", [draft.inode or 0 for draft in drafts]))
                scan = owners.scan
                sorted_owners = netlink._finish_all(drafts, owners)
                del owners
            sockets = cast(list[Socket], drafts)
            del drafts
            if fallback:
                sockets.extend(_owned(fallback, scan))
                sorted_owners = None  # it knows the decoded sockets only
    snapshot = procfs.assemble(
        sockets,
        notes,
        proc_root,
        taken_at=taken_at,
        source="netlink",
        with_processes=with_processes,
        scan=scan,
        found=sorted_owners,
    )
    return label(snapshot, discovery, read, proc_root=proc_root, node_root=node_root)


def _unpickle(payload: bytes) -> Dumped | None:
    try:
        dumped = pickle.loads(payload)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError):
        return None
    return dumped if isinstance(dumped, Dumped) else None


def _decode_into(drafts: list[SocketDraft], inode: int, dumped: Dumped, notes: list[str]) -> None:
    where_of = {0: Family.IPV4, 1: Family.IPV6}
    for number, data in enumerate(dumped.dumps):
        if data is None:
            continue
        where = f"netlink sock_diag ({where_of[number].value}) in net:[{inode}]"
        try:
            found, _ = netlink.Decoder().drafts(memoryview(data), where)
        except netlink.NetlinkError as error:
            notes.append(f"{where}: {error.problem}; not read")
            continue
        for draft in found:
            draft.netns = inode
        drafts.extend(found)
    if dumped.failure:
        notes.append(f"net:[{inode}]: a dump failed ({dumped.failure}); what came is shown")


def _read_through_process(
    found: Found, proc_root: Path, into: list[Socket], read: dict[int, _Read], notes: list[str]
) -> None:
    """The sockets of a namespace that could not be entered, from the TCP tables of a process
    living in it; sysctls stay unknown (they are only readable from inside)."""
    for pid in found.pids:
        base = proc_root / str(pid)
        try:
            sockets, _, _ = procfs.read_tables(base)
        except ProcParseError:
            continue
        into.extend(replace(sock, netns=found.inode) for sock in sockets)
        read[found.inode] = _Read(Sysctls(), procfs.read_counters(base), source=f"procfs:{base}")
        return
    read[found.inode] = _Read(source="none")
    notes.append(
        f"net:[{found.inode}]: could not be entered and no process in it could be read; "
        "its sockets are not shown"
    )


def _owned(sockets: list[Socket], scan: procfs.FdScan | None) -> list[Socket]:
    if scan is None:
        return sockets
    return [
        replace(sock, pids=pids, owner_source=source)
        for sock in sockets
        for pids, source in [procfs.owner_fields(sock.inode, scan.pids_by_inode)]
    ]


# --- names -------------------------------------------------------------------------------------


def label(
    snapshot: Snapshot,
    discovery: Discovery,
    read: dict[int, _Read],
    *,
    proc_root: Path,
    node_root: Path,
) -> Snapshot:
    """The snapshot with every process placed (namespace, container, unit) and every namespace
    read named."""
    places: dict[str, containers.CgroupPlace] = {}
    place_of_pid: dict[int, containers.CgroupPlace] = {}
    # The cgroup of every process holding a socket, and of every process outside the host's
    # namespace (they name the namespaces); the host's other processes need not be read.
    wanted_pids = {process.pid for process in snapshot.processes} | {
        pid for pid, inode in discovery.netns_of_pid.items() if inode != discovery.host
    }
    for pid in sorted(wanted_pids):
        text = procfs._read_text(f"{proc_root}/{pid}/cgroup")
        if text is None:
            continue
        place = places.get(text)
        if place is None:
            place = places[text] = containers.parse_cgroup(text)
        place_of_pid[pid] = place
    wanted = {
        place.container.id
        for place in places.values()
        if place.container is not None and place.container.id is not None
    }
    names = containers.read_node_names(node_root, wanted)
    named: dict[Container, Container] = {}

    def container_of(pid: int) -> Container | None:
        place = place_of_pid.get(pid)
        if place is None or place.container is None:
            return None
        known = named.get(place.container)
        if known is None:
            known = named[place.container] = names.name(place.container)
        return known

    host = discovery.host
    processes = tuple(
        replace(
            process,
            netns=discovery.netns_of_pid.get(process.pid),
            container=container_of(process.pid),
            unit=place_of_pid[process.pid].unit if process.pid in place_of_pid else None,
            host_network=(
                container_of(process.pid) is not None
                and container_of(process.pid).pod_uid is not None  # type: ignore[union-attr]
                and discovery.netns_of_pid.get(process.pid) == host
            ),
        )
        for process in snapshot.processes
    )
    namespaces: list[NetNamespace] = []
    me = os.getpid()
    order = [discovery.own] + [found.inode for found in discovery.others]
    for inode in order:
        if inode is None or inode not in read:
            continue
        found = discovery.found[inode]
        # tcphealth itself is no member: run inside a container's namespace, it is a visitor.
        members = [container_of(pid) for pid in found.pids if pid != me]
        namespaces.append(_namespace(found, read[inode], inode == host, members))
    first = namespaces[0] if namespaces else None
    return replace(
        snapshot,
        processes=processes,
        namespaces=tuple(namespaces),
        sysctls=first.sysctls if first is not None else snapshot.sysctls,
        counters=first.counters if first is not None else snapshot.counters,
    )


def _namespace(
    found: Found, result: _Read, is_host: bool, members: list[Container | None]
) -> NetNamespace:
    """A namespace named as a person knows it: ``host``; the pod or container all its
    processes belong to; its ``ip netns`` name; else ``net:[INODE]``."""
    ip_name = found.names[0] if found.names else None
    pid = found.pids[0] if found.pids else None
    enter = (
        os.path.join(NETNS_RUN_DIR, ip_name)
        if ip_name
        else (f"/proc/{pid}/ns/net" if pid else None)
    )
    pods = {member.pod_uid for member in members if member is not None}
    ids = {member.id for member in members if member is not None}
    common: Container | None = None
    kind = NetnsKind.NAMED if ip_name else NetnsKind.PROCESS
    text = ip_name or f"net:[{found.inode}]"
    if is_host:
        kind, text = NetnsKind.HOST, "host"
    elif members and None not in members and len(pods) == 1 and None not in pods:
        pod_member = next(member for member in members if member is not None)
        common = Container(
            runtime=pod_member.runtime,
            pod_uid=pod_member.pod_uid,
            pod=pod_member.pod,
            qos=pod_member.qos,
        )
        kind, text = NetnsKind.POD, f"pod:{pod_member.pod or pod_member.pod_uid}"
    elif members and None not in members and len(ids) == 1 and None not in ids:
        common = members[0]
        assert common is not None
        kind, text = NetnsKind.CONTAINER, f"container:{common.label}"
    return NetNamespace(
        inode=found.inode,
        label=text,
        kind=kind,
        enter=None if is_host else enter,
        ip_name=ip_name,
        names=tuple(found.names),
        pid=pid,
        process_count=len(found.pids),
        container=common,
        sysctls=result.sysctls,
        counters=result.counters,
        source=result.source,
    )


def others_note(discovery: Discovery) -> str | None:
    """For a run that read only the caller's namespace: how many others exist, and how to see
    them (root; or, already root inside another namespace, ``--netns all``)."""
    others = len(discovery.others)
    if not others and not discovery.unreadable:
        return None
    more = (
        f" (and the namespaces of {discovery.unreadable} process(es) could not be read)"
        if discovery.unreadable
        else ""
    )
    how = "--netns all reads them all" if os.geteuid() == 0 else "as root, tcphealth reads them all"
    return (
        f"only this network namespace was read; {others} other(s) exist on this host{more}: {how}"
    )


def this_namespace(
    snapshot: Snapshot,
    proc_root: Path = Path("/proc"),
    *,
    node_root: Path = Path("/"),
    netns_dir: str = NETNS_RUN_DIR,
    discovery: Discovery | None = None,
    note_others: bool = True,
) -> Snapshot:
    """A snapshot of the caller's namespace alone, the namespace named, its processes
    placed; with ``note_others``, a note when other namespaces exist."""
    if discovery is None:
        discovery = discover(proc_root, netns_dir)
    own = discovery.own
    if own is None:
        return snapshot
    # The sockets keep netns None: in a snapshot of one namespace that is the one listed (the
    # field set on each of 300,000 sockets would cost a second).
    read = {own: _Read(snapshot.sysctls, snapshot.counters, snapshot.host.source)}
    labelled = label(snapshot, discovery, read, proc_root=proc_root, node_root=node_root)
    note = others_note(discovery) if note_others else None
    if note is None:
        return labelled
    return replace(labelled, notes=(*labelled.notes, note))


def entered_namespace(snapshot: Snapshot, name: str, path: str) -> Snapshot:
    """The snapshot of ``--netns NAME``, read from inside NAME, with the namespace named
    after what the user typed, so next steps carry the way back in."""
    try:
        inode = os.stat(path).st_ino
    except OSError:
        return snapshot
    ip_name = None if "/" in name else name
    namespace = NetNamespace(
        inode=inode,
        label=name,
        kind=NetnsKind.NAMED if ip_name else NetnsKind.PROCESS,
        enter=path,
        ip_name=ip_name,
        names=(name,) if ip_name else (),
        sysctls=snapshot.sysctls,
        counters=snapshot.counters,
        source=snapshot.host.source,
    )
    # The sockets keep netns None: the snapshot's only namespace is theirs.
    return replace(snapshot, namespaces=(namespace,))


def placed(processes: Sequence[Process]) -> int:
    """How many distinct containers these processes run in."""
    return len(
        {
            (process.container.id or process.container.pod_uid)
            for process in processes
            if process.container is not None
        }
    )
