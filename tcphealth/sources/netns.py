"""Look into another network namespace: ``tcphealth --netns NAME``.

Socket tables (netlink and /proc/net/tcp) and the net sysctls are per network namespace, and
both follow the namespace of the calling thread. So the collector switches this (single-threaded)
process into the named namespace with setns(2), reads, and switches back. The /proc/*/fd walk
is not affected: socket inodes are unique across namespaces, so owners are still found.
Python 3.11 has no ``os.setns``; libc's is called through ctypes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

from tcphealth.errors import InputError

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"  # where `ip netns add NAME` binds its namespaces


class NetnsError(InputError):
    """The namespace does not exist or may not be entered."""


def namespace_path(name: str) -> str:
    """``NAME`` as ``ip netns`` names it, or a path such as /proc/PID/ns/net."""
    return name if "/" in name else os.path.join(NETNS_RUN_DIR, name)


def setns(fd: int, where: str) -> None:
    """Move the calling thread into the network namespace open at ``fd``."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        if code == errno.EPERM:
            raise NetnsError(where, "entering a network namespace needs root (CAP_SYS_ADMIN)")
        raise NetnsError(where, f"setns failed: {os.strerror(code)}")


@contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body inside network namespace ``name``; always come back."""
    path = namespace_path(name)
    try:
        target = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise NetnsError(path, "no such network namespace (`ip netns list` shows them)") from None
    except OSError as error:
        raise NetnsError(path, error.strerror or str(error)) from None
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            setns(target, path)
            try:
                yield
            finally:
                setns(home, "/proc/thread-self/ns/net")
        finally:
            os.close(home)
    finally:
        os.close(target)
