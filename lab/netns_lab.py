"""A TCP state lab in private network namespaces: every state the kernel can list, for real.

Three namespaces of our own: ``A`` (clients) and ``B`` (servers) joined by a veth pair with
addresses of our choosing (10.201.0.0/24, fd00:201::/64), and ``C`` with loopback only. The
sockets are created by *this* process (it switches namespace around each ``socket()`` call, and a
socket stays in the namespace it was created in), so every owned socket's owner is this pid.

nftables rules inside the namespaces drop chosen packets to hold the transient states: SYNs
(SYN_SENT), the handshake's final ACK (SYN_RECV), everything after the handshake (unacked data,
FIN_WAIT1, LAST_ACK), and everything but FINs (CLOSING). Per-namespace sysctls stretch the
timers so that nothing expires while the tests look. No packet leaves the namespaces: nothing
here routes anywhere but the veth pair and loopback.

:class:`Lab` records what it created (:class:`LabSocket`), checks it with ``ss`` before handing
over, and removes its namespaces (which closes every socket in them) on :meth:`Lab.close`,
which the context manager calls also when a test fails or is interrupted.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from tcphealth.model import TcpState, format_address, parse_state
from tcphealth.sources.netns import entered

PREFIX = "thlab"
_LAB_NUMBERS = itertools.count()  # several labs in one process get different names
SETUP_TIMEOUT = 20.0  # seconds to wait for any one state to appear
DARK_PORT = 9  # nothing listens there; the server namespace drops SYNs to it

# Per-namespace sysctls that make transient states outlast a test run (defaults in comments).
SYSCTLS = {
    "net.ipv4.tcp_syn_retries": "8",  # 6: SYN_SENT would give up after ~127 s
    "net.ipv4.tcp_synack_retries": "8",  # 5: SYN_RECV would give up after ~63 s
    "net.ipv4.tcp_orphan_retries": "12",  # 0 (= 8): orphaned FIN_WAIT1 / LAST_ACK
    "net.ipv4.tcp_fin_timeout": "600",  # 60: orphaned FIN_WAIT2
    "net.ipv4.tcp_abort_on_overflow": "0",  # drop, not reset, on a full accept queue
}


@dataclass(frozen=True)
class Net:
    """One address family's addresses in the lab."""

    family: socket.AddressFamily
    client: str  # in namespace A
    server: str  # in namespace B
    loopback: str  # in namespace C
    nft_family: str  # "ip" or "ip6" for nft address matches

    @property
    def name(self) -> str:
        return "ipv4" if self.family == socket.AF_INET else "ipv6"


IPV4 = Net(socket.AF_INET, "10.201.0.1", "10.201.0.2", "127.0.0.1", "ip")
IPV6 = Net(socket.AF_INET6, "fd00:201::1", "fd00:201::2", "::1", "ip6")


@dataclass(frozen=True)
class LabSocket:
    """A socket the lab created and what the kernel should show for it."""

    role: str  # what it is for, e.g. "close-wait-rq1"
    namespace: str
    family: str  # "ipv4" / "ipv6"
    state: TcpState
    local: str  # "addr:port" as ss prints it ("[addr]:port" for IPv6)
    remote: str
    owner: int | None  # the pid holding it, None when orphaned / never accepted
    recv_queue: int | None = None  # expected value, where the test pins one
    send_queue: int | None = None


def endpoint_text(address: str, port: int) -> str:
    parsed = ipaddress.ip_address(address.split("%", 1)[0])
    if parsed.version == 6:
        return f"[{format_address(parsed)}]:{port}"
    return f"{parsed}:{port}"


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")
    return result.stdout


def missing_tools() -> list[str]:
    return [tool for tool in ("ip", "nft", "ss") if shutil.which(tool) is None]


def ss_rows(namespace: str) -> list[tuple[TcpState, str, str, int, int]]:
    """(state, local, peer, recv-q, send-q) of every TCP socket ``ss`` lists in a namespace."""
    rows = []
    for line in run("ip", "netns", "exec", namespace, "ss", "-tanH").splitlines():
        state_text, recv_q, send_q, local, peer = line.split()[:5]
        state = parse_state(state_text)
        if state is None:
            raise RuntimeError(f"ss printed a state we do not know: {line!r}")
        # ss writes a dual-stack IPv6 socket bound to :: as "*:PORT".
        local = "[::]:" + local[2:] if local.startswith("*:") else local
        peer = "[::]:" + peer[2:] if peer.startswith("*:") else peer
        rows.append((state, local, peer, int(recv_q), int(send_q)))
    return rows


@dataclass
class Lab:
    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}{next(_LAB_NUMBERS)}")
    sockets: list[socket.socket] = field(default_factory=list)
    created: list[LabSocket] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    pid: int = field(default_factory=os.getpid)

    # --- namespaces and rules -----------------------------------------------------------------

    @property
    def a(self) -> str:
        return f"{self.tag}a"

    @property
    def b(self) -> str:
        return f"{self.tag}b"

    @property
    def c(self) -> str:
        return f"{self.tag}c"

    def up(self) -> None:
        for namespace in (self.a, self.b, self.c):
            run("ip", "netns", "add", namespace)
            self.namespaces.append(namespace)
            run("ip", "-n", namespace, "link", "set", "lo", "up")
            for key, value in SYSCTLS.items():
                run("ip", "netns", "exec", namespace, "sysctl", "-qw", f"{key}={value}")
            self.nft(
                namespace,
                "add table inet lab",
                "add chain inet lab input { type filter hook input priority 0; policy accept; }",
            )
        # The veth ends get their names inside the namespaces; in the root namespace they only
        # exist for an instant, under names unique to this run.
        end_a, end_b = f"{self.tag}va"[-15:], f"{self.tag}vb"[-15:]
        run(
            "ip",
            "link",
            "add",
            end_a,
            "netns",
            self.a,
            "type",
            "veth",
            "peer",
            end_b,
            "netns",
            self.b,
        )
        for namespace, end, v4, v6 in (
            (self.a, end_a, IPV4.client, IPV6.client),
            (self.b, end_b, IPV4.server, IPV6.server),
        ):
            run("ip", "-n", namespace, "addr", "add", f"{v4}/24", "dev", end)
            run("ip", "-n", namespace, "addr", "add", f"{v6}/64", "dev", end, "nodad")
            run("ip", "-n", namespace, "link", "set", end, "up")

    def nft(self, namespace: str, *commands: str) -> str:
        script = "\n".join(commands) + "\n"
        result = subprocess.run(
            ["ip", "netns", "exec", namespace, "nft", "--echo", "--handle", "-f", "-"],
            input=script,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise RuntimeError(f"nft in {namespace}: {result.stderr.strip()}\n{script}")
        return result.stdout

    def drop(self, namespace: str, rule: str) -> int:
        """Drop matching packets arriving in ``namespace`` (a rule body, e.g. 'tcp dport 80').
        Returns the rule's handle, to delete it later."""
        echoed = self.nft(namespace, f"add rule inet lab input {rule} drop")
        return int(echoed.rsplit("# handle ", 1)[1].split()[0])

    def undrop(self, namespace: str, handle: int) -> None:
        self.nft(namespace, f"delete rule inet lab input handle {handle}")

    def flush_rules(self, namespace: str) -> None:
        self.nft(namespace, "flush chain inet lab input")

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()
        for namespace in self.namespaces:
            with suppress(RuntimeError):  # deleting a namespace also frees its sockets
                run("ip", "netns", "del", namespace)
        self.namespaces.clear()

    # --- sockets ------------------------------------------------------------------------------

    def make(self, namespace: str, net: Net) -> socket.socket:
        with entered(namespace):
            sock = socket.socket(net.family, socket.SOCK_STREAM)
        self.sockets.append(sock)
        return sock

    def listener(self, namespace: str, net: Net, address: str, backlog: int) -> socket.socket:
        sock = self.make(namespace, net)
        sock.bind((address, 0))
        sock.listen(backlog)
        return sock

    def connect(
        self,
        net: Net,
        port: int,
        *,
        wait: bool = True,
        host: str | None = None,
        namespace: str | None = None,
    ) -> socket.socket:
        sock = self.make(namespace or self.a, net)
        sock.setblocking(False)
        with suppress(BlockingIOError):
            sock.connect((host or net.server, port))
        if wait:
            sock.setblocking(True)
            sock.settimeout(SETUP_TIMEOUT)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            deadline = time.monotonic() + SETUP_TIMEOUT
            while error == 0:
                try:
                    sock.getpeername()
                    break
                except OSError as problem:
                    if problem.errno != errno.ENOTCONN or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            if error:
                raise OSError(error, os.strerror(error))
        return sock

    def pair(self, listener: socket.socket, net: Net) -> tuple[socket.socket, socket.socket]:
        client = self.connect(net, listener.getsockname()[1])
        listener.settimeout(SETUP_TIMEOUT)
        server, _ = listener.accept()
        self.sockets.append(server)
        return client, server

    def record(
        self,
        role: str,
        namespace: str,
        net: Net,
        state: TcpState,
        local: tuple[str, int],
        remote: tuple[str, int],
        owner: bool,
        **queues: int,
    ) -> None:
        self.created.append(
            LabSocket(
                role=role,
                namespace=namespace,
                family=net.name,
                state=state,
                local=endpoint_text(local[0], local[1]),
                remote=endpoint_text(remote[0], remote[1]),
                owner=self.pid if owner else None,
                **queues,
            )
        )

    def held(
        self,
        role: str,
        namespace: str,
        net: Net,
        state: TcpState,
        sock: socket.socket,
        **queues: int,
    ) -> None:
        """Record a connected socket this process holds, by its own two ends."""
        self.record(
            role,
            namespace,
            net,
            state,
            sock.getsockname()[:2],
            sock.getpeername()[:2],
            True,
            **queues,
        )

    # --- the states -----------------------------------------------------------------------------

    def build(self, net: Net) -> None:
        """Create every state over one address family (see the module docstring)."""
        a, b = self.a, self.b
        main = self.listener(b, net, net.server, 64)
        main.getsockname()[1]
        self.record(
            "listen",
            b,
            net,
            TcpState.LISTEN,
            main.getsockname()[:2],
            ("::" if net.family == socket.AF_INET6 else "0.0.0.0", 0),
            True,
        )

        def established(
            role: str, client: socket.socket, server: socket.socket, **queues: int
        ) -> None:
            self.held(f"{role}-client", a, net, TcpState.ESTABLISHED, client)
            self.held(f"{role}-server", b, net, TcpState.ESTABLISHED, server, **queues)

        # ESTABLISHED, idle.
        client, server = self.pair(main, net)
        established("established-idle", client, server, recv_queue=0, send_queue=0)

        # ESTABLISHED with 100 bytes the server application never read.
        client, server = self.pair(main, net)
        client.sendall(b"u" * 100)
        established("established-unread", client, server, recv_queue=100)

        # ESTABLISHED with 100 bytes sent and never acknowledged: the server drops everything.
        unacked = self.listener(b, net, net.server, 8)
        client, server = self.pair(unacked, net)
        self.drop(b, f"{net.nft_family} saddr {net.client} tcp dport {unacked.getsockname()[1]}")
        client.send(b"n" * 100)
        self.held(
            "established-unacked-client", a, net, TcpState.ESTABLISHED, client, send_queue=100
        )
        self.held("established-unacked-server", b, net, TcpState.ESTABLISHED, server, recv_queue=0)

        # SYN_SENT: the server namespace drops SYNs to a port.
        dark_port = DARK_PORT
        self.drop(b, f"{net.nft_family} saddr {net.client} tcp dport {dark_port}")
        syn_sent = self.connect(net, dark_port, wait=False)
        self.record(
            "syn-sent",
            a,
            net,
            TcpState.SYN_SENT,
            syn_sent.getsockname()[:2],
            (net.server, dark_port),
            True,
        )

        # SYN_RECV: the handshake's final ACK never arrives; the client thinks it is connected.
        half_open = self.listener(b, net, net.server, 8)
        port = half_open.getsockname()[1]
        self.drop(b, f"{net.nft_family} saddr {net.client} tcp dport {port} tcp flags & syn == 0")
        client = self.connect(net, port)
        self.record(
            "syn-recv",
            b,
            net,
            TcpState.SYN_RECV,
            (net.server, port),
            client.getsockname()[:2],
            False,
        )
        self.record(
            "syn-recv-client",
            a,
            net,
            TcpState.ESTABLISHED,
            client.getsockname()[:2],
            (net.server, port),
            True,
        )

        # FIN_WAIT1, owned and orphaned: our FIN is never acknowledged.
        deaf = self.listener(b, net, net.server, 8)
        owned_client, owned_server = self.pair(deaf, net)
        orphan_client, orphan_server = self.pair(deaf, net)
        self.drop(b, f"{net.nft_family} saddr {net.client} tcp dport {deaf.getsockname()[1]}")
        orphan_ends = (orphan_client.getsockname()[:2], orphan_client.getpeername()[:2])
        owned_client.shutdown(socket.SHUT_WR)
        orphan_client.close()
        self.held("fin-wait1-owned", a, net, TcpState.FIN_WAIT1, owned_client)
        self.record("fin-wait1-orphan", a, net, TcpState.FIN_WAIT1, *orphan_ends, False)
        for server in (owned_server, orphan_server):
            self.held("fin-wait1-peer", b, net, TcpState.ESTABLISHED, server)

        # FIN_WAIT2 owned / CLOSE_WAIT with the FIN unread (receive queue 1).
        client, server = self.pair(main, net)
        client.shutdown(socket.SHUT_WR)
        self.held("fin-wait2-owned", a, net, TcpState.FIN_WAIT2, client)
        self.held("close-wait-rq1", b, net, TcpState.CLOSE_WAIT, server, recv_queue=1)

        # FIN_WAIT2 orphaned / CLOSE_WAIT read to EOF and never closed (receive queue 0).
        client, server = self.pair(main, net)
        ends = (client.getsockname()[:2], client.getpeername()[:2])
        client.close()
        server.settimeout(SETUP_TIMEOUT)
        if server.recv(1) != b"":
            raise RuntimeError("expected EOF on the CLOSE_WAIT side")
        self.record("fin-wait2-orphan", a, net, TcpState.FIN_WAIT2, *ends, False)
        self.held("close-wait-rq0", b, net, TcpState.CLOSE_WAIT, server, recv_queue=0)

        # CLOSE_WAIT with 50 unread data bytes plus the FIN (receive queue 51).
        client, server = self.pair(main, net)
        client.sendall(b"d" * 50)
        client.shutdown(socket.SHUT_WR)
        self.held("fin-wait2-owned-2", a, net, TcpState.FIN_WAIT2, client)
        self.held("close-wait-rq51", b, net, TcpState.CLOSE_WAIT, server, recv_queue=51)

        # LAST_ACK: the server closes after the client's FIN; the client's ACK is dropped.
        last = self.listener(b, net, net.server, 8)
        client, server = self.pair(last, net)
        client.shutdown(socket.SHUT_WR)
        self.wait_for(b, TcpState.CLOSE_WAIT, server.getsockname()[:2], server.getpeername()[:2])
        self.drop(b, f"{net.nft_family} saddr {net.client} tcp dport {last.getsockname()[1]}")
        ends = (server.getsockname()[:2], server.getpeername()[:2])
        server.close()
        self.record("last-ack", b, net, TcpState.LAST_ACK, *ends, False)

        # CLOSING: both ends send a FIN while everything between them is dropped; then only
        # the client's FIN may pass. The server, itself in FIN_WAIT1, receives a FIN that does
        # not acknowledge its own: CLOSING. Its ACK and its FIN never reach the client (still
        # in FIN_WAIT1), so neither end can move on. Letting one direction through (not both)
        # keeps this deterministic: with both open, crossing retransmissions can complete the
        # close on both ends.
        crossing = self.listener(b, net, net.server, 8)
        port = crossing.getsockname()[1]
        client, server = self.pair(crossing, net)
        client_ends = (client.getsockname()[:2], client.getpeername()[:2])
        server_ends = (server.getsockname()[:2], server.getpeername()[:2])
        to_server = f"{net.nft_family} saddr {net.client} tcp dport {port}"
        held = self.drop(b, to_server)
        self.drop(a, f"{net.nft_family} saddr {net.server} tcp sport {port}")
        client.shutdown(socket.SHUT_WR)
        server.shutdown(socket.SHUT_WR)
        self.wait_for(a, TcpState.FIN_WAIT1, *client_ends)
        self.wait_for(b, TcpState.FIN_WAIT1, *server_ends)
        self.drop(b, f"{to_server} tcp flags & fin == 0")
        self.undrop(b, held)
        self.wait_for(b, TcpState.CLOSING, *server_ends)
        self.record("closing", b, net, TcpState.CLOSING, *server_ends, True)
        self.record("closing-peer", a, net, TcpState.FIN_WAIT1, *client_ends, True)

        # TIME_WAIT: the client closes first.
        client, server = self.pair(main, net)
        ends = (client.getsockname()[:2], client.getpeername()[:2])
        client.close()
        server.settimeout(SETUP_TIMEOUT)
        server.recv(1)
        server.close()
        self.record("time-wait", a, net, TcpState.TIME_WAIT, *ends, False)

        # A listener nobody accepts from, on loopback in namespace C: listen(1) holds two
        # finished connections; the third client's SYN is dropped and it waits in SYN_SENT.
        full = self.listener(self.c, net, net.loopback, 1)
        port = full.getsockname()[1]
        self.record(
            "listen-full",
            self.c,
            net,
            TcpState.LISTEN,
            (net.loopback, port),
            ("::" if net.family == socket.AF_INET6 else "0.0.0.0", 0),
            True,
            recv_queue=2,
        )
        clients = [
            self.connect(net, port, wait=False, host=net.loopback, namespace=self.c)
            for _ in range(3)
        ]
        self.wait_for(self.c, TcpState.LISTEN, (net.loopback, port), None, recv_queue=2)
        for sock in clients:
            local = sock.getsockname()[:2]
            try:
                remote = sock.getpeername()[:2]
            except OSError:
                self.record(
                    "syn-sent-to-full",
                    self.c,
                    net,
                    TcpState.SYN_SENT,
                    local,
                    (net.loopback, port),
                    True,
                )
                continue
            self.record("unaccepted-client", self.c, net, TcpState.ESTABLISHED, local, remote, True)
            self.record("unaccepted", self.c, net, TcpState.ESTABLISHED, remote, local, False)

        if net.family == socket.AF_INET:
            # A dual-stack listener: an IPv6 socket that also takes IPv4 clients, whose
            # addresses it sees as v4-mapped (::ffff:10.201.0.1).
            dual = self.make(b, IPV6)
            dual.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            dual.bind(("::", 0))
            dual.listen(8)
            port = dual.getsockname()[1]
            self.record(
                "dual-stack-listen", b, IPV6, TcpState.LISTEN, ("::", port), ("::", 0), True
            )
            client = self.connect(IPV4, port)
            dual.settimeout(SETUP_TIMEOUT)
            server, _ = dual.accept()
            self.sockets.append(server)
            self.held("dual-stack-client", a, IPV4, TcpState.ESTABLISHED, client)
            self.held("dual-stack-server", b, IPV6, TcpState.ESTABLISHED, server)

    # --- waiting and checking ----------------------------------------------------------------

    def wait_for(
        self,
        namespace: str,
        state: TcpState,
        local: tuple[str, int],
        remote: tuple[str, int] | None,
        *,
        recv_queue: int | None = None,
    ) -> None:
        want_local = endpoint_text(*local)
        want_remote = None if remote is None else endpoint_text(*remote)
        deadline = time.monotonic() + SETUP_TIMEOUT
        while time.monotonic() < deadline:
            for row_state, row_local, row_remote, row_recv, _ in ss_rows(namespace):
                if (
                    (row_state, row_local) == (state, want_local)
                    and want_remote in (None, row_remote)
                    and recv_queue in (None, row_recv)
                ):
                    return
            time.sleep(0.05)
        raise RuntimeError(
            f"{state.value} {want_local} -> {want_remote} never appeared in {namespace}"
        )

    def verify(self) -> None:
        """Every recorded socket is listed by ss in its namespace with its state (and pinned
        queues). Raises with the list of what is missing."""
        deadline = time.monotonic() + SETUP_TIMEOUT
        missing: list[LabSocket] = []
        while time.monotonic() < deadline:
            rows = {ns: ss_rows(ns) for ns in self.namespaces}
            missing = [s for s in self.created if not _listed(s, rows[s.namespace])]
            if not missing:
                return
            time.sleep(0.1)
        raise RuntimeError(
            "not listed by ss: "
            + "; ".join(
                f"{s.role} {s.state.value} {s.local} -> {s.remote} in {s.namespace}"
                for s in missing
            )
        )

    def counts(self, namespace: str) -> Counter[TcpState]:
        return Counter(row[0] for row in ss_rows(namespace))


def _listed(expected: LabSocket, rows: list[tuple[TcpState, str, str, int, int]]) -> bool:
    remote = expected.remote
    for state, local, peer, recv_q, send_q in rows:
        if state is not expected.state or local != expected.local:
            continue
        peer_ok = peer.endswith(":*") if expected.state is TcpState.LISTEN else peer == remote
        if not peer_ok:
            continue
        if expected.recv_queue is not None and recv_q != expected.recv_queue:
            continue
        if expected.send_queue is not None and send_q != expected.send_queue:
            continue
        return True
    return False


@contextmanager
def running_lab(
    nets: tuple[Net, ...] = (IPV4, IPV6), settle: Callable[[Lab], None] | None = None
) -> Iterator[Lab]:
    lab = Lab()
    try:
        lab.up()
        for net in nets:
            lab.build(net)
        if settle is not None:
            settle(lab)
        lab.verify()
        yield lab
    finally:
        lab.close()


def leftover_namespaces() -> list[str]:
    return [
        line.split()[0]
        for line in run("ip", "netns", "list").splitlines()
        if line.startswith(PREFIX)
    ]
