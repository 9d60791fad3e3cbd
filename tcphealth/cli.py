"""The command line: parse options, choose the source and the output, exit. No logic lives here;
every command is a thin call into the library."""

from __future__ import annotations

import enum
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from tcphealth import __version__, sources
from tcphealth.errors import InputError, SourceUnavailableError
from tcphealth.model import Snapshot


class ExitCode(enum.IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    INPUT_UNREADABLE = 3


F = TypeVar("F", bound=Callable[..., Any])


def snapshot_options(command: F) -> F:
    """The options every command shares to say where the snapshot comes from."""
    options = [
        click.option(
            "--from",
            "from_file",
            type=click.Path(dir_okay=False, allow_dash=True),
            help="Read a saved snapshot (tcphealth snapshot -o FILE) instead of this host; "
            "'-' reads standard input.",
        ),
        click.option(
            "--source",
            type=click.Choice(sources.LIVE_SOURCES),
            default="auto",
            show_default=True,
            help="How to look at this host: /proc (Linux) or psutil (any OS).",
        ),
        click.option(
            "--proc-root",
            type=click.Path(file_okay=False, exists=True, path_type=Path),
            default=Path("/proc"),
            show_default=True,
            help="Read a copied /proc tree instead of the live one.",
        ),
        click.option(
            "--no-processes",
            is_flag=True,
            help="Skip the socket-to-process mapping (faster; owners are shown as unknown).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def obtain_snapshot(
    from_file: str | None, source: str, proc_root: Path, no_processes: bool
) -> Snapshot:
    """Load or collect the snapshot; any unreadable input ends the run with exit code 3."""
    try:
        if from_file is not None:
            return sources.load(from_file)
        return sources.collect_live(source, proc_root, with_processes=not no_processes)
    except (InputError, SourceUnavailableError) as error:
        click.echo(f"tcphealth: {error}", err=True)
        sys.exit(ExitCode.INPUT_UNREADABLE)


def report_notes(snapshot: Snapshot) -> None:
    """Source notes (skipped rows, unseen owners) go to stderr once, never into the results."""
    for note in snapshot.notes:
        click.echo(f"tcphealth: note: {note}", err=True)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tcphealth")
@snapshot_options
@click.pass_context
def main(
    context: click.Context,
    from_file: str | None,
    source: str,
    proc_root: Path,
    no_processes: bool,
) -> None:
    """Tell what is wrong with the TCP connections on this host, and who is to blame."""
    if context.invoked_subcommand is not None:
        return
    snapshot = obtain_snapshot(from_file, source, proc_root, no_processes)
    report_notes(snapshot)
    states = Counter(sock.state.value for sock in snapshot.sockets)
    summary = " ".join(f"{state}={count}" for state, count in sorted(states.items()))
    click.echo(f"{snapshot.host.hostname} {len(snapshot.sockets)} sockets {summary}")


@main.command()
@snapshot_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=None,
    help="Write the snapshot to FILE (atomically) instead of standard output.",
)
def snapshot(
    from_file: str | None,
    source: str,
    proc_root: Path,
    no_processes: bool,
    output: Path | None,
) -> None:
    """Save what tcphealth sees as a versioned JSON snapshot, to diagnose later or elsewhere."""
    from tcphealth.sources.snapshot_file import write_snapshot

    taken = obtain_snapshot(from_file, source, proc_root, no_processes)
    report_notes(taken)
    try:
        write_snapshot(taken, output)
    except OSError as error:
        raise click.ClickException(f"cannot write {output}: {error.strerror or error}") from None
