"""Accept-queue overflows since boot with no queue full now, made for real: in a network
namespace of its own (``unshare -n``, whose counters start at zero), a listener with a backlog
of 1 overflows, then accepts everything; tcphealth, run in that namespace, must report the
kernel's ListenOverflows (read from /proc/net/netstat there, the oracle) as ``listen-overflowed``
and name the listener's short backlog. Nothing leaves the namespace's loopback; the namespace
ends with its one process, which the test waits for (and kills by pid on a timeout)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux"),
    pytest.mark.skipif(os.geteuid() != 0, reason="unshare -n needs root"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare"),
]

SCENE = r"""
import json, socket, subprocess, sys, time

def overflows():
    lines = open("/proc/net/netstat").read().splitlines()
    names, values = lines[0].split(), lines[1].split()
    return int(dict(zip(names, values))["ListenOverflows"])

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
before = overflows()
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(1)
port = server.getsockname()[1]
clients = []
for _ in range(6):  # bounded: a backlog of 1 holds 2, the others' SYNs are dropped
    client = socket.socket()
    client.setblocking(False)
    client.connect_ex(("127.0.0.1", port))
    clients.append(client)
deadline = time.monotonic() + 15
while overflows() == before:
    assert time.monotonic() < deadline, "no overflow in time"
    time.sleep(0.1)
for client in clients:
    client.close()
server.setblocking(False)
accepted = []
time.sleep(0.3)
while True:  # take whatever waits: the queue is empty from here on
    try:
        accepted.append(server.accept()[0])
    except BlockingIOError:
        break
for sock in accepted:
    sock.close()
time.sleep(0.3)
counted = overflows()
out = subprocess.run(
    [sys.executable, "-m", "tcphealth", "--format", "json", "--no-pager"],
    capture_output=True, text=True, check=False,
)
print(json.dumps({"port": port, "before": before, "counted": counted,
                  "after": overflows(), "report": out.stdout, "stderr": out.stderr}))
server.close()
"""


def test_overflows_since_boot_are_reported_once_the_queue_is_empty() -> None:
    process = subprocess.Popen(
        ["unshare", "-n", sys.executable, "-c", SCENE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    scene = json.loads(out)
    assert scene["before"] == 0  # a namespace of its own: its counters start at zero
    assert scene["counted"] == scene["after"] > 0, scene
    report = json.loads(scene["report"])
    (finding,) = [f for f in report["findings"] if f["code"] == "listen-overflowed"]
    assert not [f for f in report["findings"] if f["code"].startswith("listen-queue")]
    assert finding["severity"] == "INFO"
    evidence = {item["name"]: item for item in finding["evidence"]}
    assert evidence["ListenOverflows"]["value"] == scene["counted"]
    assert evidence["listen_backlog"]["value"] == 1
    assert evidence["listen_backlog"]["detail"] == f"on 127.0.0.1:{scene['port']}, 0 waiting now"
    assert f"The shortest backlog listed is 1, on 127.0.0.1:{scene['port']}" in finding["summary"]
