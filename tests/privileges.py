"""Running the CLI as another user, for the tests of what tcphealth does without privileges.

A fork, not a new interpreter: the interpreter under /root is not executable by ``nobody``, and
nor is its standard library readable, so everything the CLI may need is imported before the
fork (:func:`_import_everything`) -- tcphealth imports renderers, sources and ``pickle`` only
when a run uses them. The child never returns into pytest.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import pwd
import sys
import time
from pathlib import Path


def can_drop_to(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return os.geteuid() == 0


def _import_everything() -> None:
    """Every tcphealth module and what they import, and the standard-library modules tcphealth
    imports inside functions; a real unprivileged user can read them later, this child
    cannot."""
    import tcphealth

    for module in pkgutil.walk_packages(tcphealth.__path__, "tcphealth."):
        if not module.name.endswith(".__main__"):  # that one runs the CLI when imported
            importlib.import_module(module.name)
    importlib.import_module("pickle")  # tcphealth.sources.background_scan, on demand


def run_cli_as(
    user: str, args: list[str], workdir: Path, timeout: float = 60
) -> tuple[int, str, str]:
    """Run ``tcphealth ARGS`` as ``user``; its exit code, stdout and stderr. ``workdir`` holds
    the captured output and must be writable by root (the files are opened before the drop)."""
    from tcphealth.cli import main

    _import_everything()
    entry = pwd.getpwnam(user)
    out_path, err_path = workdir / "stdout", workdir / "stderr"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 70
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout = os.fdopen(1, "w", closefd=False)
                sys.stderr = os.fdopen(2, "w", closefd=False)
                # Drop the inherited sockets, or this child would be their visible owner.
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
                os.setgroups([])
                os.setgid(entry.pw_gid)
                os.setuid(entry.pw_uid)
                try:
                    main.main(args, prog_name="tcphealth", standalone_mode=True)
                    code = 0
                except SystemExit as exit_:
                    code = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        finished, status = os.waitpid(pid, os.WNOHANG)
        if finished:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError(f"tcphealth as {user} did not finish in {timeout} s")
        time.sleep(0.05)
    return os.waitstatus_to_exitcode(status), out_path.read_text(), err_path.read_text()
