"""Which container, pod or unit a /proc/PID/cgroup names, and the names a node's files give.

Table-driven over the forms each runtime writes (cgroup v2 and v1); the live scene in
test_live_namespaces.py checks the same against real cgroup directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tcphealth.model import Container
from tcphealth.sources.containers import NodeNames, parse_cgroup, read_node_names

ID = "3f2a9c1b7d4e" + "0" * 52
UID = "8e2f6d1c-4b3a-4e5f-9a8b-7c6d5e4f3a2b"
UNDERSCORED = UID.replace("-", "_")


@pytest.mark.parametrize(
    ("text", "runtime", "container_id", "pod_uid", "qos", "unit"),
    [
        (f"0::/system.slice/docker-{ID}.scope\n", "docker", ID, None, None, None),
        (
            f"12:cpu,cpuacct:/docker/{ID}\n1:name=systemd:/docker/{ID}\n",
            "docker",
            ID,
            None,
            None,
            None,
        ),
        (
            "0::/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{UNDERSCORED}.slice/cri-containerd-{ID}.scope\n",
            "containerd",
            ID,
            UID,
            "burstable",
            None,
        ),
        (
            "0::/kubepods.slice/kubepods-besteffort.slice/"
            f"kubepods-besteffort-pod{UNDERSCORED}.slice/crio-{ID}.scope\n",
            "cri-o",
            ID,
            UID,
            "besteffort",
            None,
        ),
        (
            f"0::/kubepods.slice/kubepods-pod{UNDERSCORED}.slice/cri-containerd-{ID}.scope\n",
            "containerd",
            ID,
            UID,
            "guaranteed",
            None,
        ),
        # The kubelet's cgroupfs driver, on a cgroup v1 host: no runtime in the path.
        (
            f"4:memory:/kubepods/burstable/pod{UID}/{ID}\n1:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n0::/\n",
            None,
            ID,
            UID,
            "burstable",
            None,
        ),
        (f"0::/machine.slice/libpod-{ID}.scope/container\n", "podman", ID, None, None, None),
        ("0::/system.slice/nginx.service\n", None, None, None, None, "nginx.service"),
        (
            "0::/user.slice/user-0.slice/session-4.scope\n",
            None,
            None,
            None,
            None,
            "session-4.scope",
        ),
        ("0::/\n", None, None, None, None, None),
        ("", None, None, None, None, None),
        ("garbage without colons\n", None, None, None, None, None),
    ],
)
def test_each_runtime_s_cgroup_path(
    text: str,
    runtime: str | None,
    container_id: str | None,
    pod_uid: str | None,
    qos: str | None,
    unit: str | None,
) -> None:
    place = parse_cgroup(text)
    if container_id is None and pod_uid is None:
        assert place.container is None
    else:
        assert place.container == Container(
            runtime=runtime, id=container_id, pod_uid=pod_uid, qos=qos
        )
    assert place.unit == unit


def test_a_conmon_scope_is_no_container() -> None:
    # CRI-O and podman run a monitor per container in crio-conmon-ID.scope: not the container.
    assert parse_cgroup(f"0::/system.slice/crio-conmon-{ID}.scope\n").container is None


def test_names_from_the_kubelet_logs_and_the_runtimes_files(tmp_path: Path) -> None:
    pods = tmp_path / "var/log/pods"
    (pods / f"shop_web-7d9f_{UID}" / "app").mkdir(parents=True)
    (pods / "not_a pod dir").mkdir()
    logs = tmp_path / "var/log/containers"
    logs.mkdir(parents=True)
    (logs / f"web-7d9f_shop_app-{ID}.log").write_text("")
    crio_id, docker_id = "a" * 64, "b" * 64
    bundle = tmp_path / f"run/containers/storage/overlay-containers/{crio_id}/userdata"
    bundle.mkdir(parents=True)
    (bundle / "config.json").write_text(
        json.dumps(
            {
                "annotations": {
                    "io.kubernetes.pod.name": "db-0",
                    "io.kubernetes.pod.namespace": "shop",
                    "io.kubernetes.container.name": "postgres",
                }
            }
        )
    )
    docker = tmp_path / f"var/lib/docker/containers/{docker_id}"
    docker.mkdir(parents=True)
    (docker / "config.v2.json").write_text(json.dumps({"Name": "/cache"}))
    broken = tmp_path / f"var/lib/docker/containers/{'c' * 64}"
    broken.mkdir(parents=True)
    (broken / "config.v2.json").write_text("{not json")

    names = read_node_names(tmp_path, {crio_id, docker_id, "c" * 64, "d" * 64})
    assert names.pods == {UID: "shop/web-7d9f"}
    assert names.containers[ID] == ("app", "shop/web-7d9f")
    assert names.containers[crio_id] == ("postgres", "shop/db-0")
    assert names.containers[docker_id] == ("cache", None)
    assert "c" * 64 not in names.containers and "d" * 64 not in names.containers

    named = names.name(Container(runtime="containerd", id=ID, pod_uid=UID))
    assert (named.name, named.pod, named.label) == ("app", "shop/web-7d9f", "app")
    # A pod known by its uid alone (the sandbox's pause process, say).
    assert names.name(Container(pod_uid=UID)).pod == "shop/web-7d9f"


def test_labels_without_names() -> None:
    assert Container(runtime="docker", id=ID).label == "docker:3f2a9c1b7d4e"
    assert Container(pod_uid=UID, pod="shop/web").label == "pod shop/web"
    assert NodeNames().name(Container(runtime="cri-o", id=ID)).label == "cri-o:3f2a9c1b7d4e"


def test_an_oversized_bundle_is_not_read(tmp_path: Path) -> None:
    container_id = "e" * 64
    bundle = tmp_path / f"run/containerd/io.containerd.runtime.v2.task/k8s.io/{container_id}"
    bundle.mkdir(parents=True)
    annotations = {"io.kubernetes.cri.container-name": "x", "pad": "y" * (2 << 20)}
    (bundle / "config.json").write_text(json.dumps({"annotations": annotations}))
    assert container_id not in read_node_names(tmp_path, {container_id}).containers
