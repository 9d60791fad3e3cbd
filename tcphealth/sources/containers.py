"""Which container or pod a process runs in, from its cgroup path and the node's own files.

No container runtime is asked (no socket, no network call): the cgroup path a runtime puts
each container in names the runtime and the container id, and for Kubernetes the pod uid and
QoS class; the names a person knows come from files the node already holds:

- the kubelet's log directories: ``/var/log/pods/<namespace>_<pod>_<uid>/<container>/`` name
  the pod of a uid, and ``/var/log/containers/<pod>_<namespace>_<container>-<id>.log`` the
  container of an id;
- the OCI bundle a runtime writes for each container (``config.json``), whose annotations
  name pod and container (containerd ``io.kubernetes.cri.*``, CRI-O ``io.kubernetes.*``), and
  Docker's ``config.v2.json`` (``"Name": "/web"``).

The cgroup forms recognised (cgroup v2 ``0::PATH``, or v1 ``N:controllers:PATH``)::

    /system.slice/docker-<id>.scope                 docker, systemd driver
    /docker/<id>                                    docker, cgroupfs driver
    /kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_with_underscores>.slice/
        cri-containerd-<id>.scope | crio-<id>.scope | docker-<id>.scope
    /kubepods.slice/kubepods-pod<uid>.slice/...     a guaranteed pod (no QoS part)
    /kubepods/<qos>/pod<uid>/<id>                   the kubelet's cgroupfs driver
    /machine.slice/libpod-<id>.scope                podman
    /system.slice/nginx.service                     a systemd unit, no container

Every file read here may have been written by anyone who can start a container: each is read
up to a small limit, and whatever does not parse is ignored.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from tcphealth.model import Container

# A JSON bundle file larger than this is no runtime's config: not read.
MAX_CONFIG_BYTES = 1 << 20

_HEX_ID = r"[0-9a-f]{12,64}"
_SCOPE = re.compile(
    rf"^(?P<prefix>docker|cri-containerd|crio|libpod|cri-docker)-(?P<id>{_HEX_ID})\.scope$"
)
_RUNTIME_OF_PREFIX = {
    "docker": "docker",
    "cri-docker": "docker",
    "cri-containerd": "containerd",
    "crio": "cri-o",
    "libpod": "podman",
}
_SYSTEMD_POD = re.compile(
    r"^kubepods(?:-(?P<qos>besteffort|burstable))?-pod(?P<uid>[0-9a-f_]+)\.slice$"
)
_CGROUPFS_POD = re.compile(r"^pod(?P<uid>[0-9a-f-]{8,})$")
_BARE_ID = re.compile(rf"^{_HEX_ID}$")
_UNIT = re.compile(r"^[^/]+\.(?:service|scope)$")


@dataclass(frozen=True)
class CgroupPlace:
    """What a cgroup path says: the container (if any) and the systemd unit (if no
    container)."""

    container: Container | None = None
    unit: str | None = None


def cgroup_path(text: str) -> str | None:
    """The path to read from a /proc/PID/cgroup file: the cgroup v2 one (``0::``) where it says
    more than ``/``, else the first v1 line that names a container or a pod, else the
    ``name=systemd`` one."""
    unified: str | None = None
    systemd: str | None = None
    telling: str | None = None
    for line in text.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not path:
            continue
        if number == "0" and controllers == "":
            unified = path
        elif controllers == "name=systemd":
            systemd = path
        elif telling is None and ("kubepods" in path or "docker" in path or "libpod" in path):
            telling = path
    if unified and unified != "/":
        return unified
    return telling or systemd or unified


def parse_cgroup(text: str) -> CgroupPlace:
    """The container, pod and unit a /proc/PID/cgroup file names.

    >>> parse_cgroup("0::/system.slice/docker-" + "ab" * 32 + ".scope").container.runtime
    'docker'
    >>> parse_cgroup("0::/system.slice/nginx.service").unit
    'nginx.service'
    """
    path = cgroup_path(text)
    if not path:
        return CgroupPlace()
    parts = [part for part in path.split("/") if part]
    runtime: str | None = None
    container_id: str | None = None
    pod_uid: str | None = None
    qos: str | None = None
    kubepods = False
    for index, part in enumerate(parts):
        if part in ("kubepods.slice", "kubepods"):
            kubepods = True
            qos = "guaranteed"
            continue
        if kubepods and part in ("besteffort", "burstable"):
            qos = part
            continue
        if kubepods and (match := re.match(r"^kubepods-(besteffort|burstable)\.slice$", part)):
            qos = match.group(1)
            continue
        if match := _SYSTEMD_POD.match(part):
            kubepods = True
            qos = match.group("qos") or "guaranteed"
            # The systemd driver writes the uid's '-' as '_'.
            pod_uid = match.group("uid").replace("_", "-")
            continue
        if kubepods and (match := _CGROUPFS_POD.match(part)):
            pod_uid = match.group("uid")
            continue
        if match := _SCOPE.match(part):
            runtime = _RUNTIME_OF_PREFIX[match.group("prefix")]
            container_id = match.group("id")
            continue
        if _BARE_ID.match(part) and len(part) == 64:
            previous = parts[index - 1] if index else ""
            if previous == "docker":
                runtime, container_id = "docker", part
            elif pod_uid is not None or previous in ("lxc", "libpod_parent"):
                container_id = part
    if container_id is None and pod_uid is None:
        last = parts[-1] if parts else ""
        unit = last if _UNIT.match(last) else None
        # A process inside a podman container may sit in a child cgroup of the scope.
        return CgroupPlace(unit=unit)
    return CgroupPlace(
        container=Container(runtime=runtime, id=container_id, pod_uid=pod_uid, qos=qos)
    )


@dataclass
class NodeNames:
    """The names the node's own files give: pod uid -> ``namespace/name``, container id ->
    (container name, ``namespace/name`` of its pod or None)."""

    pods: dict[str, str] = field(default_factory=dict)
    containers: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)

    def name(self, container: Container) -> Container:
        """``container`` with the names this node knows for it filled in."""
        name, pod = (None, None)
        if container.id is not None:
            name, pod = self.containers.get(container.id, (None, None))
        if pod is None and container.pod_uid is not None:
            pod = self.pods.get(container.pod_uid)
        return replace(container, name=name or container.name, pod=pod or container.pod)


_LOG_POD_DIR = re.compile(r"^(?P<namespace>[^_/]+)_(?P<name>[^_/]+)_(?P<uid>[0-9a-f-]{8,})$")
_LOG_CONTAINER = re.compile(
    r"^(?P<pod>[^_/]+)_(?P<namespace>[^_/]+)_(?P<container>.+)-(?P<id>[0-9a-f]{64})\.log$"
)


def read_node_names(node_root: Path, wanted_ids: set[str] | None = None) -> NodeNames:
    """Everything :class:`NodeNames` holds, read below ``node_root`` (``/`` on a live host).
    ``wanted_ids``: the container ids whose OCI bundle to look for (None: none)."""
    names = NodeNames()
    for entry in _listdir(node_root / "var/log/pods"):
        if match := _LOG_POD_DIR.match(entry):
            names.pods[match.group("uid")] = f"{match.group('namespace')}/{match.group('name')}"
    for entry in _listdir(node_root / "var/log/containers"):
        if match := _LOG_CONTAINER.match(entry):
            pod = f"{match.group('namespace')}/{match.group('pod')}"
            names.containers[match.group("id")] = (match.group("container"), pod)
    for container_id in sorted(wanted_ids or ()):
        if container_id not in names.containers:
            found = _bundle_names(node_root, container_id)
            if found is not None:
                names.containers[container_id] = found
    return names


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


# Where each runtime keeps a container's OCI bundle (relative to the node root), by id.
_BUNDLES = (
    "run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/config.json",
    "run/containerd/io.containerd.runtime.v2.task/moby/{id}/config.json",
    "run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby/{id}/config.json",
    "run/containers/storage/overlay-containers/{id}/userdata/config.json",
    "var/lib/containers/storage/overlay-containers/{id}/userdata/config.json",
)
_DOCKER_CONFIG = "var/lib/docker/containers/{id}/config.v2.json"


def _bundle_names(node_root: Path, container_id: str) -> tuple[str | None, str | None] | None:
    """(container name, pod) from the runtime's files for this id; None where none is there."""
    for pattern in _BUNDLES:
        document = _read_json(node_root / pattern.format(id=container_id))
        if document is None:
            continue
        annotations = document.get("annotations")
        if not isinstance(annotations, dict):
            continue
        return _from_annotations(annotations)
    document = _read_json(node_root / _DOCKER_CONFIG.format(id=container_id))
    if document is not None:
        name = document.get("Name")
        if isinstance(name, str) and name.strip("/"):
            return name.strip("/"), None
    return None


def _from_annotations(annotations: dict[object, object]) -> tuple[str | None, str | None]:
    def text(*keys: str) -> str | None:
        for key in keys:
            value = annotations.get(key)
            if isinstance(value, str) and value:
                return value
        return None

    container = text("io.kubernetes.cri.container-name", "io.kubernetes.container.name")
    pod_name = text("io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name")
    pod_namespace = text("io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace")
    pod = f"{pod_namespace}/{pod_name}" if pod_name and pod_namespace else None
    return container, pod


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_CONFIG_BYTES:
        return None
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None
