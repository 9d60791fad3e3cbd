"""A container host in miniature, for the tests of reading every network namespace.

Real network namespaces (``ip netns add`` ones and an unnamed one from ``unshare -n``),
real processes in them holding known TCP states over loopback, real cgroup v2 directories
named as Docker, containerd under a kubepods slice and CRI-O name them (the processes moved
into them), and a node tree (``var/log/pods``, ``var/log/containers``, an OCI ``config.json``,
Docker's ``config.v2.json``) in a temporary directory that tcphealth is pointed at with
``--node-root``.

Everything made is undone by :meth:`Scene.close` -- the processes stopped by pid, the
namespaces deleted, the cgroup directories removed -- and :func:`leftovers` finds what an
interrupted run left, by the names' prefix.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "thi20"  # every namespace and cgroup this scene makes starts with it
NETNS_DIR = Path("/run/netns")
LEAK_COUNT = 12  # CLOSE_WAIT held by the "cache" container: above close_wait_warning (10)
TIME_WAIT_COUNT = 5

# The process in each namespace: sets loopback up, makes its sockets, says "ready <port>" and
# waits for its stdin to close. Modes: leak (CLOSE_WAIT it never closes), full (a listener
# whose accept queue is full), timewait (TIME_WAIT, then it exits), listen (one listener).
WORKER = r"""
import os, socket, subprocess, sys, time
mode = sys.argv[1]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
keep = []
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
port = listener.getsockname()[1]
if mode == "leak":
    listener.listen(64)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(int(sys.argv[2]))]
    keep = [listener.accept()[0] for _ in clients]
    for client in clients:
        client.close()  # the peer closes: the accepted sockets go CLOSE_WAIT, never closed
    time.sleep(0.2)
    for held in keep:
        held.recv(10)  # read to end-of-file, keep the descriptor: a leak
elif mode == "full":
    listener.listen(1)
    for _ in range(3):
        client = socket.socket()
        client.setblocking(False)
        try:
            client.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        keep.append(client)
    time.sleep(0.3)
elif mode == "timewait":
    listener.listen(16)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(int(sys.argv[2]))]
    accepted = [listener.accept()[0] for _ in clients]
    for one in accepted:
        one.close()  # this side closes first: it will sit in TIME_WAIT
    time.sleep(0.2)
    for client in clients:
        client.close()
    time.sleep(0.3)
    print("ready", port, flush=True)
    sys.exit(0)
else:
    listener.listen(8)
print("ready", port, flush=True)
sys.stdin.read()
"""


def cgroup2_root() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (the unified one on a hybrid host)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if " - cgroup2 " in line and len(fields) > 4:
                return Path(fields[4])
    return None


def missing_tools() -> list[str]:
    return [tool for tool in ("ip", "nsenter", "unshare", "ss") if shutil.which(tool) is None]


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[str]
    port: int
    cgroup: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class Scene:
    node_root: Path
    cgroup_root: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)  # ip netns names made
    cgroups: list[Path] = field(default_factory=list)  # directories made, outermost first
    workers: dict[str, Worker] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # container ids by role
    pod_uids: dict[str, str] = field(default_factory=dict)

    # --- making ---

    def netns(self, role: str) -> str:
        name = f"{PREFIX}-{role}-{self.tag}"
        subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
        self.namespaces.append(name)
        return name

    def cgroup(self, *parts: str) -> Path:
        """A cgroup below this scene's own directory (so that everything under it is named
        exactly as the runtimes name theirs, and nothing of the host's is touched)."""
        path = self.cgroup_root
        for part in (f"{PREFIX}-{self.tag}", *parts):
            path = path / part
            if not path.exists():
                path.mkdir()
                self.cgroups.append(path)
        return path

    def start(self, role: str, argv_prefix: list[str], mode: str, *args: str) -> Worker:
        process = subprocess.Popen(
            [*argv_prefix, sys.executable, "-c", WORKER, mode, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline().split()
        assert line[:1] == ["ready"], f"worker {role} did not start: {line}"
        worker = Worker(role, process, int(line[1]))
        self.workers[role] = worker
        return worker

    def place(self, worker: Worker, cgroup: Path) -> None:
        (cgroup / "cgroup.procs").write_text(f"{worker.pid}\n")
        worker.cgroup = cgroup

    def build(self) -> None:
        """The whole scene (see the module's text)."""
        self.ids = {role: secrets.token_hex(32) for role in ("cache", "app", "db")}
        self.pod_uids = {
            "web": "1f0e5c2a-7b3d-4e8f-9a01-" + secrets.token_hex(6),
            "db": "2a1b3c4d-5e6f-4a8b-9c0d-" + secrets.token_hex(6),
        }
        slice_uid = {role: uid.replace("-", "_") for role, uid in self.pod_uids.items()}
        # Docker (systemd driver): a CLOSE_WAIT leak, in a named namespace.
        leak_ns = self.netns("leak")
        leak = self.start("cache", ["ip", "netns", "exec", leak_ns], "leak", str(LEAK_COUNT))
        self.place(leak, self.cgroup("system.slice", f"docker-{self.ids['cache']}.scope"))
        # containerd under a burstable kubepods slice: a full listener, in an unnamed namespace.
        full = self.start("app", ["unshare", "--net"], "full")
        kubepods = "kubepods.slice"
        self.place(
            full,
            self.cgroup(
                kubepods,
                "kubepods-burstable.slice",
                f"kubepods-burstable-pod{slice_uid['web']}.slice",
                f"cri-containerd-{self.ids['app']}.scope",
            ),
        )
        # CRI-O, a hostNetwork pod: a listener in the host's namespace.
        host_pod = self.start("db", [], "listen")
        self.place(
            host_pod,
            self.cgroup(
                kubepods,
                "kubepods-besteffort.slice",
                f"kubepods-besteffort-pod{slice_uid['db']}.slice",
                f"crio-{self.ids['db']}.scope",
            ),
        )
        # A named namespace whose only process exits, leaving its TIME_WAIT behind.
        empty_ns = self.netns("empty")
        self.start("gone", ["ip", "netns", "exec", empty_ns], "timewait", str(TIME_WAIT_COUNT))
        self.workers["gone"].process.wait(timeout=30)
        self._node_files()

    def _node_files(self) -> None:
        root = self.node_root
        pods = root / "var/log/pods"
        (pods / f"shop_web-7d9f_{self.pod_uids['web']}" / "app").mkdir(parents=True)
        (pods / f"shop_db-0_{self.pod_uids['db']}" / "db").mkdir(parents=True)
        containers = root / "var/log/containers"
        containers.mkdir(parents=True)
        (containers / f"web-7d9f_shop_app-{self.ids['app']}.log").write_text("")
        bundle = root / f"run/containers/storage/overlay-containers/{self.ids['db']}/userdata"
        bundle.mkdir(parents=True)
        annotations = {
            "io.kubernetes.pod.name": "db-0",
            "io.kubernetes.pod.namespace": "shop",
            "io.kubernetes.container.name": "postgres",
        }
        (bundle / "config.json").write_text(json.dumps({"annotations": annotations}))
        docker = root / f"var/lib/docker/containers/{self.ids['cache']}"
        docker.mkdir(parents=True)
        (docker / "config.v2.json").write_text(json.dumps({"Name": "/cache"}))

    # --- reading ---

    def inode(self, role: str) -> int:
        """The inode of the namespace a role lives in (or of a named namespace's mount)."""
        if role == "empty":
            return os.stat(NETNS_DIR / self.namespaces[1]).st_ino
        return os.stat(f"/proc/{self.workers[role].pid}/ns/net").st_ino

    def enter(self, role: str) -> str:
        if role == "empty":
            return str(NETNS_DIR / self.namespaces[1])
        return f"/proc/{self.workers[role].pid}/ns/net"

    # --- undoing ---

    def close(self) -> None:
        for worker in self.workers.values():
            _stop(worker.process)
        for cgroup in reversed(self.cgroups):
            _remove_cgroup(cgroup)
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _remove_cgroup(path: Path) -> None:
    # A cgroup is removed once its last process is gone; an exiting one may linger a moment.
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)


@contextlib.contextmanager
def running_scene(node_root: Path) -> Iterator[Scene]:
    root = cgroup2_root()
    assert root is not None, "no cgroup v2 hierarchy mounted"
    scene = Scene(node_root, root)
    try:
        scene.build()
        yield scene
    finally:
        scene.close()


def leftovers() -> list[str]:
    """What a scene left behind: namespaces and cgroup directories with the prefix."""
    found = [name for name in _listdir(NETNS_DIR) if name.startswith(PREFIX)]
    root = cgroup2_root()
    if root is not None:
        found += [str(root / name) for name in _listdir(root) if name.startswith(PREFIX)]
    return found


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
