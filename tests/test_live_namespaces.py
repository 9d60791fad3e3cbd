"""Every network namespace of a host in one run, checked against the kernel.

The scene (tests/netns_scene.py): a Docker container leaking CLOSE_WAIT in a named namespace,
a pod's containerd container with a full accept queue in an unnamed namespace, a CRI-O pod on
the host network, and a named namespace whose last process is gone, leaving TIME_WAIT behind;
each process in a real cgroup v2 directory named as its runtime names it, and the pods named
by a /var/log/pods tree in a temporary node root. Per namespace, tcphealth's state counts must
equal ``nsenter --net=... ss -tan``; each finding must name its namespace, container and pod;
the next step it prints, run as printed, must show the sockets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tcphealth.model import NetnsKind, parse_state
from tcphealth.sources import namespaces
from tests.netns_scene import (
    LEAK_COUNT,
    TIME_WAIT_COUNT,
    Scene,
    cgroup2_root,
    leftovers,
    missing_tools,
    running_scene,
)
from tests.privileges import can_drop_to, run_cli_as
from tests.terminal import run_in_terminal

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="entering namespaces and cgroups needs root"),
    pytest.mark.skipif(bool(missing_tools()), reason=f"missing {missing_tools()}"),
    pytest.mark.skipif(cgroup2_root() is None, reason="no cgroup v2 hierarchy mounted"),
]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    node_root = tmp_path_factory.mktemp("node")
    with running_scene(node_root) as built:
        yield built
    assert leftovers() == [], "the scene left namespaces or cgroups behind"


def tcphealth(scene: Scene, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "tcphealth", *args, "--node-root", str(scene.node_root)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120", "NO_COLOR": "1"},
    )
    if check:
        assert done.returncode in (0, 1, 2), done.stderr
    return done


def report(scene: Scene, *args: str) -> dict[str, Any]:
    return _json(tcphealth(scene, *args, "--format", "json", "--sockets").stdout)


def _json(text: str) -> dict[str, Any]:
    document = json.loads(text)
    assert isinstance(document, dict)
    return document


def ss_states(enter: str) -> Counter[str]:
    """``nsenter --net=ENTER ss -tanH``: sockets per state, in tcphealth's spelling."""
    out = subprocess.run(
        ["nsenter", f"--net={enter}", "ss", "-tanH"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    counts: Counter[str] = Counter()
    for line in out.splitlines():
        state = parse_state(line.split()[0])
        assert state is not None, line
        counts[state.value] += 1
    return counts


def states_in(document: dict[str, Any], inode: int) -> Counter[str]:
    return Counter(s["state"] for s in document["sockets"] if s["netns_inode"] == inode)


def namespace_of(document: dict[str, Any], inode: int) -> dict[str, Any]:
    (found,) = [ns for ns in document["namespaces"] if ns["inode"] == inode]
    assert isinstance(found, dict)
    return found


ROLES = ("cache", "app", "empty")


def _settled_report(scene: Scene) -> dict[str, Any]:
    """tcphealth's report, taken between two counts of ``ss`` that agree in every role's
    namespace (a SYN retried in the pod's namespace may complete meanwhile); three tries."""
    for _ in range(3):
        before = {role: ss_states(scene.enter(role)) for role in ROLES}
        document = report(scene)
        after = {role: ss_states(scene.enter(role)) for role in ROLES}
        if before == after:
            document["ss"] = after
            return document
    raise AssertionError(f"the scene did not hold still: {before} then {after}")


def test_every_namespace_is_found_and_counted_as_ss_counts_it(scene: Scene) -> None:
    document = _settled_report(scene)
    assert document["version"] == 2
    inodes = {ns["inode"] for ns in document["namespaces"]}
    for role in ROLES:
        assert scene.inode(role) in inodes, role
    # Counted by the kernel before and after, namespace by namespace: the TIME_WAIT and the
    # orphaned FIN_WAIT2 last 60 s, the leak and the full queue as long as their processes.
    for role in ROLES:
        assert states_in(document, scene.inode(role)) == document["ss"][role], role
    assert states_in(document, scene.inode("cache"))["CLOSE_WAIT"] == LEAK_COUNT
    assert states_in(document, scene.inode("empty")) == Counter({"TIME_WAIT": TIME_WAIT_COUNT})
    assert document["summary"]["namespaces"] == len(document["namespaces"])
    assert document["summary"]["containers"] >= 3


def test_namespaces_are_labelled_as_a_person_knows_them(scene: Scene) -> None:
    document = report(scene)
    cache = namespace_of(document, scene.inode("cache"))
    assert (cache["label"], cache["kind"]) == ("container:cache", "container")
    assert cache["container"]["runtime"] == "docker"
    assert cache["way_in"] == f"ip netns exec {scene.namespaces[0]}"
    app = namespace_of(document, scene.inode("app"))
    assert (app["label"], app["kind"], app["pod"]) == ("pod:shop/web-7d9f", "pod", "shop/web-7d9f")
    assert app["ip_name"] is None and app["enter"] == f"/proc/{scene.workers['app'].pid}/ns/net"
    empty = namespace_of(document, scene.inode("empty"))
    assert (empty["label"], empty["kind"], empty["processes"]) == (scene.namespaces[1], "named", 0)
    host = document["namespaces"][0]
    assert (host["label"], host["kind"], host["way_in"]) == ("host", NetnsKind.HOST.value, None)


def test_processes_are_placed_in_their_containers_and_pods(scene: Scene) -> None:
    processes = {p["pid"]: p for p in report(scene, "--all")["processes"]}
    cache = processes[scene.workers["cache"].pid]
    assert cache["container"]["name"] == "cache"
    assert (cache["container"]["id"], cache["pod"]) == (scene.ids["cache"], None)
    app = processes[scene.workers["app"].pid]
    assert app["container"] == {
        "label": "app",
        "runtime": "containerd",
        "id": scene.ids["app"],
        "name": "app",
        "pod": "shop/web-7d9f",
        "pod_uid": scene.pod_uids["web"],
        "qos": "burstable",
    }
    db = processes[scene.workers["db"].pid]
    assert (db["container"]["runtime"], db["container"]["name"]) == ("cri-o", "postgres")
    assert (db["pod"], db["container"]["qos"], db["netns"]) == ("shop/db-0", "besteffort", "host")
    assert db["host_network"] is True
    assert cache["host_network"] is False


def _finding(document: dict[str, Any], code_prefix: str, pid: int) -> dict[str, Any]:
    (found,) = [
        f for f in document["findings"] if f["code"].startswith(code_prefix) and f["pid"] == pid
    ]
    assert isinstance(found, dict)
    return found


def test_each_finding_names_its_namespace_container_and_pod(scene: Scene) -> None:
    document = report(scene)
    leak = _finding(document, "close-wait", scene.workers["cache"].pid)
    assert (leak["netns"], leak["container"], leak["pod"]) == ("container:cache", "cache", None)
    assert leak["summary"].startswith("In container cache: ")
    full = _finding(document, "listen-queue-full", scene.workers["app"].pid)
    assert (full["netns"], full["container"], full["pod"]) == (
        "pod:shop/web-7d9f",
        "app",
        "shop/web-7d9f",
    )
    assert full["summary"].startswith("In pod shop/web-7d9f: ")
    # The counters of that namespace, not the host's: its own ListenOverflows.
    evidence = {item["name"]: item["value"] for item in full["evidence"]}
    overflows = subprocess.run(
        ["nsenter", f"--net={scene.enter('app')}", "cat", "/proc/net/netstat"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    names, values = [line.split() for line in overflows.splitlines() if line.startswith("TcpExt")]
    kernel = int(values[names.index("ListenOverflows")])
    assert evidence.get("ListenOverflows") in (None, kernel, kernel - 1, kernel + 1)


def _run_step(step: str) -> str:
    command = step.split("   #")[0]
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (command, done.stderr)
    return done.stdout


def test_the_next_steps_run_as_printed_show_the_sockets(scene: Scene) -> None:
    document = report(scene)
    leak = _finding(document, "close-wait", scene.workers["cache"].pid)
    way_in = f"ip netns exec {scene.namespaces[0]} "
    (step,) = [s for s in leak["next_steps"] if s.startswith(way_in + "ss ")]
    shown = _run_step(step)
    held = [line for line in shown.splitlines() if f"pid={scene.workers['cache'].pid}," in line]
    assert len(held) == LEAK_COUNT, shown
    full = _finding(document, "listen-queue-full", scene.workers["app"].pid)
    way_in = f"nsenter --net=/proc/{scene.workers['app'].pid}/ns/net "
    (step,) = [s for s in full["next_steps"] if s.startswith(way_in + "ss -ltn")]
    shown = _run_step(step)
    assert re.search(rf"LISTEN\s+2\s+1\s+127\.0\.0\.1:{scene.workers['app'].port}\b", shown), shown
    # The same namespace reached through the runtime is offered too.
    assert any(s.startswith("nsenter -t $(crictl inspect") for s in full["next_steps"])


def test_filters_by_container_pod_and_namespace(scene: Scene) -> None:
    by_pod = report(scene, "--pod", "shop/web-*")
    assert {s["netns_inode"] for s in by_pod["sockets"]} == {scene.inode("app")}
    assert {f["pod"] for f in by_pod["findings"]} == {"shop/web-7d9f"}
    by_container = report(scene, "--container", "cache")
    assert Counter(s["state"] for s in by_container["sockets"])["CLOSE_WAIT"] == LEAK_COUNT
    assert {s["container"] for s in by_container["sockets"]} == {"cache"}
    # Live --netns NAME enters that one namespace alone.
    named = report(scene, "--netns", scene.namespaces[1])
    assert [ns["label"] for ns in named["namespaces"]] == [scene.namespaces[1]]
    assert Counter(s["state"] for s in named["sockets"]) == ss_states(scene.enter("empty"))


def test_a_snapshot_records_every_namespace_and_replays_it(scene: Scene, tmp_path: Path) -> None:
    saved = tmp_path / "host.json"
    tcphealth(scene, "snapshot", "-o", str(saved))
    assert json.loads(saved.read_text())["version"] == 2
    replayed = json.loads(
        tcphealth(scene, "--from", str(saved), "--format", "json", "--sockets").stdout
    )
    assert states_in(replayed, scene.inode("cache"))["CLOSE_WAIT"] == LEAK_COUNT
    leak = _finding(replayed, "close-wait", scene.workers["cache"].pid)
    assert (leak["netns"], leak["container"]) == ("container:cache", "cache")
    one = json.loads(
        tcphealth(
            scene, "--from", str(saved), "--netns", "container:cache", "--format", "json"
        ).stdout
    )
    assert [ns["label"] for ns in one["namespaces"]] == ["container:cache"]
    assert one["summary"]["states"]["CLOSE_WAIT"] == LEAK_COUNT


def test_the_table_groups_by_namespace_and_says_how_many(scene: Scene) -> None:
    table = tcphealth(scene, "--format", "table", "--all").stdout
    assert re.search(r"\d+ network namespaces \(host, ", table), table[:600]
    assert "── container:cache" in table
    assert f"ip netns exec {scene.namespaces[0]} ..." in table
    assert "container cache" in table and "pod shop/db-0  hostNetwork" in table


def test_a_series_counts_every_namespace_over_time(scene: Scene) -> None:
    """The counts over time a series shows are the host's, every namespace in them: the
    last look's equal the report's own, and the leaking container's CLOSE_WAIT is there."""
    document = _json(
        tcphealth(scene, "--samples", "2", "--interval", "0.2", "--format", "json").stdout
    )
    history = document["series"]["states"]
    assert len(history) == 2
    last = {key: value for key, value in history[-1].items() if not key.startswith("taken_at")}
    assert last == document["summary"]["states"]
    assert history[-1]["CLOSE_WAIT"] >= LEAK_COUNT


def test_watch_on_a_terminal_says_where_each_finding_and_process_is(scene: Scene) -> None:
    """The live view of a container host: each finding's namespace, container and pod under
    its title, and the processes under a line naming their namespace, as the table does."""
    # Only the two workers' sockets are shown: the view is fitted to the height, and whatever
    # else this host holds (the host's findings come first) would push the scene's blocks off
    # even a tall screen while other tests run. 200 lines leave room for any host-wide limit.
    workers = [str(scene.workers[name].pid) for name in ("cache", "app")]
    run = run_in_terminal(
        ["watch", "--count", "1", "--node-root", str(scene.node_root)]
        + [arg for pid in workers for arg in ("--pid", pid)],
        100,
        200,
        timeout=120,
    )
    assert run.status == 0, "\n".join(run.transcript)
    rows = run.transcript
    assert not any("Traceback" in row for row in rows), "\n".join(rows)
    # Each finding's block: its title, where it is, then its summary.
    leak = _row_index(rows, "In container cache: ")
    assert rows[leak - 1].strip() == "netns container:cache  container cache", rows[leak - 2 : leak]
    assert f"pid {scene.workers['cache'].pid} " in rows[leak - 2]
    full = _row_index(rows, "In pod shop/web-7d9f: ")
    assert rows[full - 1].strip() == "netns pod:shop/web-7d9f  container app  pod shop/web-7d9f"
    assert rows[full - 2].startswith("CRITICAL listen-queue-full  pid ")
    heading = _row_index(rows, "── container:cache  net:[")
    (owner,) = [
        n for n, row in enumerate(rows) if row.startswith(f"pid {scene.workers['cache'].pid} ")
    ]
    assert heading < owner and not any(row.startswith("── ") for row in rows[heading + 1 : owner])


def _row_index(rows: list[str], text: str) -> int:
    found = [number for number, row in enumerate(rows) if text in row]
    assert found, (text, "\n".join(rows))
    return found[0]


def test_a_namespace_that_cannot_be_entered_is_read_through_a_process(scene: Scene) -> None:
    snapshot = namespaces.collect_all(node_root=scene.node_root, enter=False)
    inode = scene.inode("cache")
    (read,) = [ns for ns in snapshot.namespaces if ns.inode == inode]
    assert read.source.startswith("procfs:/proc/")
    mine = Counter(s.state.value for s in snapshot.sockets if s.netns == inode)
    assert mine == ss_states(scene.enter("cache"))
    assert read.sysctls.somaxconn is None  # only readable from inside


def test_without_root_one_note_says_how_many_others_exist(scene: Scene, tmp_path: Path) -> None:
    if not can_drop_to("nobody"):
        pytest.skip("needs a 'nobody' user")
    code, _, stderr = run_cli_as("nobody", ["check", "--no-processes"], tmp_path, 180)
    assert code in (0, 1, 2), stderr
    (note,) = [line for line in stderr.splitlines() if "network namespace" in line]
    match = re.search(r"only this network namespace was read; (\d+) other\(s\) exist", note)
    assert match and int(match.group(1)) >= 2, note
    assert "as root, tcphealth reads them all" in note


def test_the_scene_is_what_the_kernel_says(scene: Scene) -> None:
    """The scene itself: a test that passes on an empty namespace proves nothing."""
    assert ss_states(scene.enter("cache"))["CLOSE-WAIT".replace("-", "_")] == LEAK_COUNT
    assert shutil.which("nsenter") is not None
    discovery = namespaces.discover()
    assert scene.inode("empty") in discovery.found
    assert discovery.found[scene.inode("empty")].pids == []


def test_run_inside_a_namespace_it_reads_that_one_as_ss_does(scene: Scene) -> None:
    name = scene.namespaces[0]
    done = subprocess.run(
        ["ip", "netns", "exec", name, sys.executable, "-m", "tcphealth", "--format", "json",
         "--sockets", "--node-root", str(scene.node_root)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode in (0, 1, 2), done.stderr
    document = _json(done.stdout)
    assert [ns["label"] for ns in document["namespaces"]] == ["container:cache"]
    assert Counter(s["state"] for s in document["sockets"]) == ss_states(scene.enter("cache"))
    assert "only this network namespace was read" in done.stderr
    assert "--netns all reads them all" in done.stderr


def test_a_stale_file_under_run_netns_is_no_namespace(tmp_path: Path) -> None:
    (tmp_path / "stale").write_text("")  # what an unmounted ip netns name leaves behind
    discovery = namespaces.discover(netns_dir=str(tmp_path))
    assert all("stale" not in found.names for found in discovery.found.values())
    assert discovery.own in discovery.found


def test_a_namespace_gone_before_its_child_reads_it_is_reported_not_raised() -> None:
    workers = namespaces._Workers()
    try:
        workers.start([(1, "/proc/0/ns/net"), (2, "/nonexistent/netns")], with_tcp_info=True)
        frames = {inode: kind for inode, kind, _ in workers.frames()}
    finally:
        workers.stop()
    assert frames == {1: namespaces._GONE, 2: namespaces._GONE}
    assert workers.unanswered() == []


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_a_run_in_an_unnamed_namespace_does_not_take_it_for_the_host_s() -> None:
    """``unshare -n tcphealth`` where pid 1's namespace link is hidden (this VM's sandbox hides
    it even from root): the caller's namespace, with no name bound, was taken for the host's,
    so the run read every namespace and called its own "host". kthreadd's (pid 2) is the
    host's: kernel threads live in the initial namespace."""
    probe = (
        "import json, os; from tcphealth.sources import namespaces; d = namespaces.discover(); "
        "print(json.dumps([d.own, d.host, d.netns_of_pid.get(2)]))"
    )
    done = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    own, host, kthreadd = json.loads(done.stdout)
    outside = os.stat("/proc/self/ns/net").st_ino
    assert own != outside  # the probe ran in a namespace of its own
    assert host == outside == kthreadd
