"""The command line: parse options, choose the source and the output, exit. No logic lives here;
every command is a thin call into the library (:mod:`tcphealth.pipeline` makes the report or
follows the host, a renderer from the :mod:`tcphealth.render` registry writes it), and every
library error becomes one line on stderr and exit code 3. The output environment is looked at
once per run (:func:`environment`).

Options shared by several commands are one decorator each, and each decorator hands its
command one ready value (:class:`~tcphealth.pipeline.Inputs`,
:class:`~tcphealth.filters.SocketFilter`), so no command body ever looks at raw option values.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO, TypeVar, cast

import click
from click.core import ParameterSource
from click.shell_completion import CompletionItem

from tcphealth import __version__, sources, states
from tcphealth.diagnose.config import ConfigError, Thresholds, load_thresholds
from tcphealth.errors import InputError, SourceUnavailableError
from tcphealth.filters import (
    FilterError,
    SocketFilter,
    apply_filter,
    notes_for_selection,
    parse_network,
    saved_selection,
)
from tcphealth.model import TCP_STATES, Family, Severity, Snapshot, TcpState, state_asked_for
from tcphealth.phrases import plural
from tcphealth.pipeline import Inputs, UsageConflict, follow, report_of, take_samples
from tcphealth.render import FORMATS, Environment, RenderOptions, View, output_format, render
from tcphealth.render.environment import COLOR_CHOICES
from tcphealth.render.nagios import status_line, unknown_line
from tcphealth.render.pager import paged
from tcphealth.render.text import inert, severity_counts
from tcphealth.report import ExitCode, Report, thresholds_report

F = TypeVar("F", bound=Callable[..., Any])


class Failure(click.ClickException):
    """A request tcphealth cannot carry out: one line on stderr, exit code 3."""

    exit_code = ExitCode.INPUT_UNREADABLE

    def show(self, file: IO[Any] | None = None) -> None:
        # The message may quote a file name or a field of a stranger's file: shown inert.
        click.echo(f"tcphealth: {inert(self.format_message())}", err=True)


class InputUnreadable(Failure):
    """No report can be made: the snapshot, the /proc tree or the config file is unusable."""


class OutputFailure(Failure):
    """Standard output cannot be written (a full disk, a closed descriptor, a quota)."""


def _output_failure(error: OSError) -> OutputFailure:
    # What is still buffered goes nowhere: the flush at exit must not fail a second time.
    stdout_closed()
    return OutputFailure(f"cannot write standard output: {error.strerror or error}")


class _GuardedStdout:
    """Standard output whose write errors other than a closed pipe become one line: the
    reader who went away ends the run quietly, a full disk says so (exit 3)."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream

    def _target(self) -> TextIO:
        if self._stream is None:  # started with stdout closed (`>&-`)
            raise OutputFailure("cannot write standard output: it is closed")
        return self._stream

    def write(self, text: str) -> int:
        try:
            return self._target().write(text)
        except BrokenPipeError:
            raise
        except OSError as error:
            raise _output_failure(error) from None

    def flush(self) -> None:
        try:
            self._target().flush()
        except BrokenPipeError:
            raise
        except OSError as error:
            raise _output_failure(error) from None

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)


class InternalError(Failure):
    """A bug in tcphealth. Exit 3 like unreadable input, so a monitoring system reads
    UNKNOWN, never a warning (1) or a critical finding (2)."""


def _print_traceback(error: BaseException) -> None:
    """For ``--debug``: the traceback of what went wrong, before the one-line message. A
    :class:`Failure` is raised ``from None``; its context is the error worth seeing."""
    import traceback  # only --debug needs it

    cause = error.__context__ if isinstance(error, Failure) and error.__context__ else error
    click.echo("".join(traceback.format_exception(cause)), err=True, nl=False)


class UsageProblem(click.UsageError):
    """A usage error that exits with 3, not click's 2: for ``check``, 2 means a critical
    finding, and a monitoring system must not read a typo as one."""

    exit_code = ExitCode.INPUT_UNREADABLE

    @classmethod
    def from_click(cls, error: click.UsageError) -> UsageProblem:
        if isinstance(error, UsageProblem):
            return error
        return cls(error.format_message(), error.ctx)


# What a shell reports for a program killed by SIGPIPE: the reader (`| head`) went away.
EXIT_BROKEN_PIPE = 141
# What a shell reports for a program ended by Ctrl-C (SIGINT).
EXIT_INTERRUPTED = 130


# What a run built, kept from being freed object by object as its command returns (0.14 s at
# 300,000 sockets): the console script (run()) leaves without freeing anything, and the
# operating system takes the whole process back at once. None when main() is called any other
# way (tests, a library user): nothing is kept, everything is freed as usual.
_kept_until_exit: list[object] | None = None


def keep_until_exit(built: object) -> None:
    if _kept_until_exit is not None:
        _kept_until_exit.append(built)


def run() -> None:
    """The console script: :func:`main`, its output flushed, then an immediate exit -- no
    freeing of what the run built, no interpreter teardown. The exit status is main's."""
    global _kept_until_exit
    _kept_until_exit = []
    try:
        main(prog_name="tcphealth")
        status = 0
    except SystemExit as end:
        status = _exit_status(end.code)
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:  # the reader went away before the last of the output
        stdout_closed()
        status = status or EXIT_BROKEN_PIPE
    except OSError as error:  # the last of the output did not fit (a full disk)
        with contextlib.suppress(OSError, ValueError):
            _output_failure(error).show()
        status = int(ExitCode.INPUT_UNREADABLE)
    except ValueError:  # stdout closed or not a real file: nothing left to say
        pass
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(status)


def _exit_status(code: object) -> int:
    """The status ``sys.exit(code)`` would give: None is 0, a number itself, anything else
    is printed on stderr and gives 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(OSError, ValueError):
        print(code, file=sys.stderr)
    return 1


def stdout_closed() -> None:
    """The reader of stdout went away: send the rest to /dev/null, so that neither later writes
    nor the flush at exit raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):  # not a real file (tests)
        pass


class TcphealthGroup(click.Group):
    """A click group whose usage errors are :class:`UsageProblem` (exit code 3), and where a
    closed pipe on stdout ends the run quietly."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:
            raise UsageProblem.from_click(error) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            raise UsageProblem.from_click(error) from None
        except BrokenPipeError:
            stdout_closed()
            raise click.exceptions.Exit(EXIT_BROKEN_PIPE) from None
        except KeyboardInterrupt:
            # Ctrl-C while sampling or collecting: no traceback, the shell's usual status.
            click.echo("tcphealth: interrupted", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except Failure as failure:
            if settings(ctx).debug:
                _print_traceback(failure)
            raise
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as error:  # a bug: one line; --debug shows where
            if settings(ctx).debug:
                _print_traceback(error)
            raise InternalError(
                f"internal error: {type(error).__name__}: {error} "
                "(a bug in tcphealth; --debug shows where)"
            ) from None


def _add_options(command: Callable[..., Any], options: Sequence[Callable[[F], F]]) -> Any:
    for option in reversed(options):
        command = option(command)
    return command


# --- options of the run itself, accepted before or after the command name ------------------------


@dataclass
class Settings:
    """How this run talks to the person: set by --debug, --quiet, --color and --no-pager
    wherever on the command line they were given (before the command name or after it)."""

    debug: bool = False
    quiet: bool = False
    no_pager: bool = False
    color: str = "auto"


def settings(context: click.Context | None = None) -> Settings:
    """This run's :class:`Settings`, kept in the context's ``meta`` (one dict shared by the
    group and the command it runs)."""
    context = context or click.get_current_context()
    found = context.meta.get("tcphealth.settings")
    if not isinstance(found, Settings):
        found = context.meta["tcphealth.settings"] = Settings()
    return found


def _set_flag(context: click.Context, parameter: click.Parameter, value: bool) -> None:
    if value and parameter.name:
        setattr(settings(context), parameter.name, True)


def _set_color(context: click.Context, parameter: click.Parameter, value: str | None) -> None:
    if value is not None:
        settings(context).color = value


RUN_OPTIONS = [
    click.option(
        "--color",
        type=click.Choice(COLOR_CHOICES),
        default=None,
        expose_value=False,
        callback=_set_color,
        help="Colour: auto (on a terminal, unless NO_COLOR is set), always (also into "
        "'less -R' or a file), never.  [default: auto]",
    ),
    click.option(
        "--no-pager",
        is_flag=True,
        expose_value=False,
        callback=_set_flag,
        help="Never page (also: TCPHEALTH_PAGER=cat). A table taller than the terminal "
        "otherwise goes through $TCPHEALTH_PAGER, $PAGER or 'less -FRX'.",
    ),
    click.option(
        "-q",
        "--quiet",
        is_flag=True,
        expose_value=False,
        callback=_set_flag,
        help="No notes on stderr (skipped rows, unseen owners, what was written); warnings "
        "and errors are still shown.",
    ),
    click.option(
        "--debug",
        is_flag=True,
        envvar="TCPHEALTH_DEBUG",
        expose_value=False,
        callback=_set_flag,
        help="On an error, also print the Python traceback (for a bug report).",
    ),
]


def run_options(command: F) -> F:
    """--color, --no-pager, --quiet and --debug: on the group and on every command, so they
    work wherever they are written."""
    return cast(F, _add_options(command, RUN_OPTIONS))


# --- where the snapshot comes from --------------------------------------------------------------


@contextlib.contextmanager
def input_errors() -> Iterator[None]:
    """Options that cannot go together are a usage error; input that cannot be read is
    :class:`InputUnreadable` (exit 3)."""
    try:
        yield
    except UsageConflict as conflict:
        raise click.UsageError(str(conflict)) from None
    except (InputError, SourceUnavailableError) as error:
        raise InputUnreadable(str(error)) from None


@dataclass(frozen=True)
class Sampling:
    samples: int = 1
    interval: float = 1.0


SAMPLES_OPTION = click.option(
    "--samples",
    type=click.IntRange(1, 10_000),
    default=1,
    show_default=True,
    metavar="N",
    help="Look N times, --interval apart, and diagnose with time: what stayed, what was "
    "replaced, what grew, which kernel counters rose.",
)
INTERVAL_OPTION = click.option(
    "--interval",
    type=click.FloatRange(0.05, 86_400),
    default=None,
    metavar="SECONDS",
    help="Seconds between samples (default 1 with --samples, 2 for watch).",
)


def sampling_options(command: F) -> F:
    """``--samples`` and ``--interval``; the command receives ``sampling: Sampling``."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        interval = kwargs.pop("interval")
        sampling = Sampling(kwargs.pop("samples"), 1.0 if interval is None else interval)
        return command(*args, sampling=sampling, **kwargs)

    return cast(F, _add_options(wrapper, [SAMPLES_OPTION, INTERVAL_OPTION]))


FROM_OPTION = click.option(
    "--from",
    "from_file",
    # readable=False: an unreadable file is the source's one-line error, not click's usage text
    type=click.Path(allow_dash=True, readable=False),
    metavar="PATH",
    help="Read PATH instead of this host: a saved snapshot (tcphealth snapshot -o FILE), "
    "ss or netstat output, a copy of /proc/net/tcp, or a copied /proc directory; "
    "'-' reads standard input.",
)
PROC_ROOT_OPTION = click.option(
    "--proc-root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path("/proc"),
    show_default=True,
    help="Read a copied /proc tree instead of the live one.",
)
SNAPSHOT_OPTIONS = [
    FROM_OPTION,
    click.option(
        "--source",
        type=click.Choice(sources.LIVE_SOURCES),
        default="auto",
        show_default=True,
        help="How to look at this host: netlink (what ss uses), /proc, or psutil (any OS).",
    ),
    PROC_ROOT_OPTION,
    click.option(
        "--no-processes",
        is_flag=True,
        help="Skip the socket-to-process mapping (faster; owners are shown as unknown).",
    ),
    click.option(
        "--netns",
        metavar="NAME",
        default=None,
        help="Which network namespaces: by default every one when run as root in the host's "
        "(else this one); 'all' every one from anywhere; 'self' only this one; NAME (ip netns "
        "list) or PATH (/proc/PID/ns/net) only that one (root). With --from: the part of the "
        "snapshot in NAME (a label, ip netns name or inode).",
    ),
    click.option(
        "--node-root",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("/"),
        show_default=True,
        help="Where the kubelet's and the container runtimes' files are (var/log/pods, "
        "run/containerd, ...), for pod and container names.",
    ),
    click.option(
        "--input-format",
        type=click.Choice(sources.INPUT_FORMATS),
        default="auto",
        show_default=True,
        help=sources.INPUT_FORMATS_HELP,
    ),
    click.option(
        "--strict",
        is_flag=True,
        help="Refuse --from input with a row that cannot be read (exit 3) instead of "
        "skipping it with a note.",
    ),
]


def snapshot_options(command: F) -> F:
    """The options every command shares to say where the snapshot comes from; the command
    receives them as ``inputs: Inputs``."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        inputs = Inputs(
            from_file=kwargs.pop("from_file"),
            source=kwargs.pop("source"),
            proc_root=kwargs.pop("proc_root"),
            no_processes=kwargs.pop("no_processes"),
            netns=kwargs.pop("netns"),
            node_root=kwargs.pop("node_root"),
            input_format=kwargs.pop("input_format"),
            strict=kwargs.pop("strict"),
        )
        return command(*args, inputs=inputs, **kwargs)

    return cast(F, _add_options(wrapper, SNAPSHOT_OPTIONS))


# --- which sockets ------------------------------------------------------------------------------


def _states(_: click.Context, __: click.Parameter, values: tuple[str, ...]) -> list[TcpState]:
    states: list[TcpState] = []
    for text in values:
        state = state_asked_for(text)
        if state is None:
            raise click.BadParameter(
                f"{text!r} is not a TCP state (e.g. CLOSE_WAIT, close-wait, ESTAB, SYN-RECV, "
                "finwait2, the /proc code 08)"
            )
        states.append(state)
    return states


# What completion offers for a state: the canonical names and ss's spellings.
STATE_WORDS = tuple(
    sorted(
        {state.value for state in TCP_STATES}
        | {"estab", "syn-sent", "syn-recv", "fin-wait-1", "fin-wait-2", "time-wait"}
        | {"close", "close-wait", "last-ack", "listen", "closing"}
    )
)


def complete_state(_: click.Context, __: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """State names for the shell: those starting with what was typed, in its case (ss's
    lower-case spellings, or the canonical upper-case names)."""
    typed = incomplete.lower()
    upper = incomplete[:1].isupper()
    words = [word for word in STATE_WORDS if word.isupper() == upper] or list(STATE_WORDS)
    return [CompletionItem(word) for word in words if word.lower().startswith(typed)]


def parse_ports(text: str) -> range:
    """``8080`` or ``8000-8100`` (both ends included) as a range of ports; ValueError with
    the reason for anything else."""
    low_text, dash, high_text = text.strip().partition("-")
    if not dash:
        high_text = low_text
    try:
        low, high = int(low_text), int(high_text)
    except ValueError:
        raise ValueError(f"{text!r} is not a port or a range of ports (8080, 8000-8100)") from None
    for port in (low, high):
        if not 0 <= port <= 65535:
            raise ValueError(f"{text!r}: {port} is not a port (0 to 65535)")
    if low > high:
        raise ValueError(f"{text!r}: the range runs backwards (write {high}-{low})")
    return range(low, high + 1)


def _ports(_: click.Context, __: click.Parameter, values: tuple[str, ...]) -> frozenset[int]:
    ports: set[int] = set()
    for text in values:
        try:
            ports.update(parse_ports(text))
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
    return frozenset(ports)


def _networks(_: click.Context, __: click.Parameter, values: tuple[str, ...]) -> list[Any]:
    try:
        return [parse_network(text) for text in values]
    except FilterError as error:
        raise click.BadParameter(str(error)) from None


FILTER_OPTIONS = [
    click.option(
        "--state",
        "states",
        multiple=True,
        metavar="STATE",
        callback=_states,
        shell_complete=complete_state,
        help="Only sockets in STATE, in any tool's spelling (CLOSE_WAIT, close-wait, ESTAB, "
        "FinWait2, the /proc code 08); repeatable.",
    ),
    click.option(
        "--port",
        "ports",
        multiple=True,
        metavar="PORT[-PORT]",
        callback=_ports,
        help="Only sockets with this local or remote port, or one in the range "
        "(8000-8100); repeatable.",
    ),
    click.option(
        "--pid",
        "pids",
        multiple=True,
        metavar="PID",
        type=click.IntRange(0),
        help="Only sockets held by this process id; repeatable.",
    ),
    click.option(
        "--process",
        "processes",
        multiple=True,
        metavar="GLOB",
        help="Only sockets held by a process whose name matches GLOB (java, 'post*'); repeatable.",
    ),
    click.option(
        "--local",
        "local",
        multiple=True,
        metavar="ADDR|CIDR",
        callback=_networks,
        help="Only sockets whose local address is ADDR or in CIDR; repeatable.",
    ),
    click.option(
        "--remote",
        "remote",
        multiple=True,
        metavar="ADDR|CIDR",
        callback=_networks,
        help="Only sockets whose remote address is ADDR or in CIDR; repeatable.",
    ),
    click.option(
        "--container",
        "containers",
        multiple=True,
        metavar="GLOB",
        help="Only sockets of a container whose name, label or id matches GLOB; repeatable.",
    ),
    click.option(
        "--pod",
        "pods",
        multiple=True,
        metavar="NAMESPACE/NAME",
        help="Only sockets of this Kubernetes pod (a glob; or its uid); repeatable.",
    ),
    click.option("-4", "ipv4", is_flag=True, help="Only IPv4 sockets."),
    click.option("-6", "ipv6", is_flag=True, help="Only IPv6 sockets."),
]


def filter_options(command: F) -> F:
    """The options that narrow the sockets; the command receives ``flt: SocketFilter``."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        families = {Family.IPV4} if kwargs.pop("ipv4") else set()
        if kwargs.pop("ipv6"):
            families.add(Family.IPV6)
        flt = SocketFilter(
            states=frozenset(kwargs.pop("states")),
            ports=frozenset(kwargs.pop("ports")),
            pids=frozenset(kwargs.pop("pids")),
            processes=tuple(kwargs.pop("processes")),
            local=tuple(kwargs.pop("local")),
            remote=tuple(kwargs.pop("remote")),
            families=frozenset(families),
            containers=tuple(kwargs.pop("containers")),
            pods=tuple(kwargs.pop("pods")),
        )
        return command(*args, flt=flt, **kwargs)

    return cast(F, _add_options(wrapper, FILTER_OPTIONS))


# --- how the results look, and the thresholds ----------------------------------------------------

FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    default=None,
    help="Output format. Default: table on a terminal, plain when piped.",
)
CONFIG_OPTION = click.option(
    "--config",
    type=click.Path(path_type=Path),
    default=None,
    help="Thresholds file (TOML). Default: ./tcphealth.toml, then /etc/tcphealth.toml.",
)

LIMIT_OPTION = click.option(
    "--limit",
    type=click.IntRange(0),
    metavar="N",
    default=None,
    help="List at most N sockets (0: all). Default: 200 in a table, all otherwise.",
)


def output_options(command: F) -> F:
    """``--format`` and ``--config``, for the commands that diagnose and render."""
    return cast(F, _add_options(command, [FORMAT_OPTION, CONFIG_OPTION]))


def load_config(path: Path | None) -> tuple[Thresholds, Path | None]:
    try:
        return load_thresholds(path)
    except ConfigError as error:
        raise InputUnreadable(str(error)) from None


def environment() -> Environment:
    """Where this run's output goes: looked at once, by the top-level command, and shared by
    the command it runs."""
    root = click.get_current_context().find_root()
    if not isinstance(root.obj, Environment):
        chosen = settings(root)
        root.obj = Environment.detect(
            stdout=cast(TextIO, _GuardedStdout(sys.stdout)),
            color=chosen.color,
            no_pager=chosen.no_pager,
            quiet=chosen.quiet,
        )
    return root.obj


def say(env: Environment, line: str) -> None:
    """One line on stderr, at once (a note must not wait behind a long run's output)."""
    env.stderr.write(line + "\n")
    env.stderr.flush()


def note_empty_selection(env: Environment, report: Report, fmt: str | None) -> None:
    """Filters that matched no socket: the table says so on screen; plain lines and JSON print
    no record at all, so a pipe gets the reason on stderr instead of silence (JSON also has
    ``empty_selection``)."""
    if env.quiet or report.empty_selection is None:
        return
    if (fmt or env.default_format) != "table":
        say(env, f"tcphealth: note: no socket matched {inert(report.empty_selection)}")


def report_notes(env: Environment, notes: Sequence[str], skipped_lines: int = 0) -> None:
    """Source notes (skipped rows, unseen owners) go to stderr once, never into the results;
    then how many input lines were skipped, so a diagnosis of part of a paste says so."""
    for note in () if env.quiet else notes:
        say(env, f"tcphealth: note: {inert(note)}")
    if skipped_lines:
        say(
            env,
            f"tcphealth: warning: {plural(skipped_lines, 'input line')} looked like "
            "socket rows but could not be read; the diagnosis leaves them out "
            "(--strict refuses such input)",
        )


def sample_progress(
    env: Environment, planned: int, interval: float
) -> contextlib.AbstractContextManager[Callable[[int], None] | None]:
    """The progress of a run on stderr, only when stderr is a terminal (rich is imported only
    then): for ``planned`` samples ``interval`` apart, a bar with the sample number and the time
    left; for one look (or one file), a spinner if it takes longer than a second."""
    if not env.stderr_isatty:
        return contextlib.nullcontext(None)
    from tcphealth.render.progress import SampleProgress, SlowWork

    if planned < 2:
        return SlowWork(env, "reading the sockets")
    return SampleProgress(env, planned, interval, "sampling")


def make_report(
    env: Environment,
    inputs: Inputs,
    flt: SocketFilter,
    config: Path | None,
    sampling: Sampling = Sampling(),
) -> Report:
    """One snapshot, or several samples diagnosed with time (--samples, a series file)."""
    thresholds, _ = load_config(config)  # before the collection: a bad file fails fast
    live = inputs.from_file is None
    with (
        input_errors(),
        sample_progress(env, sampling.samples if live else 1, sampling.interval) as progress,
    ):
        diagnosed = report_of(
            inputs, flt, thresholds, sampling.samples, sampling.interval, progress
        )
    keep_until_exit(diagnosed)
    report_notes(env, diagnosed.report.notes, diagnosed.noted.skipped_lines)
    if diagnosed.cut_short:
        say(
            env,
            f"tcphealth: interrupted after {len(diagnosed.samples)} of "
            f"{plural(diagnosed.planned, 'sample')}: the diagnosis is of those taken",
        )
        cut_short(click.get_current_context())
    return diagnosed.report


def cut_short(context: click.Context) -> None:
    """Ctrl-C ended the sampling and the run goes on with what it took: it ends with the
    shell's status for an interrupted program (130), not 0."""
    context.meta["tcphealth.cut_short"] = True


def exit_status(context: click.Context, status: int = 0) -> int:
    return EXIT_INTERRUPTED if context.meta.get("tcphealth.cut_short") else status


def _reject_group_options(context: click.Context) -> None:
    """``tcphealth --from x check`` would silently ignore --from; say where it belongs."""
    given = [
        name
        for name in context.params
        if context.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)
    ]
    if given:
        raise click.UsageError(
            f"options given before '{context.invoked_subcommand}' belong to the report; "
            f"write them after the command name: tcphealth {context.invoked_subcommand} [OPTIONS]"
        )


# --- the commands --------------------------------------------------------------------------------


@click.group(
    cls=TcphealthGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="tcphealth")
@snapshot_options
@sampling_options
@filter_options
@output_options
@click.option("--all", "show_all", is_flag=True, help="Show every process and every row.")
@click.option("--sockets", "with_sockets", is_flag=True, help="Also list every socket.")
@LIMIT_OPTION
@click.option(
    "--brief",
    is_flag=True,
    help="Only the verdict: one line per finding, worst first, and the counts.",
)
@run_options
@click.pass_context
def main(
    context: click.Context,
    inputs: Inputs,
    sampling: Sampling,
    flt: SocketFilter,
    fmt: str | None,
    config: Path | None,
    show_all: bool,
    with_sockets: bool,
    limit: int | None,
    brief: bool,
) -> None:
    """Tell what is wrong with the TCP connections on this host, and who is to blame.

    Without a command: the verdict (one line per finding, worst first), then each finding in
    detail, then the sockets of each process, and a closing line with the counts. At a
    terminal, output taller than the screen goes through a pager.
    Exit codes: 0 report made, 3 input unreadable or bad usage, 130 interrupted (see 'check'
    for 1 and 2).
    """
    if context.invoked_subcommand is not None:
        _reject_group_options(context)
        return
    env = environment()
    report = make_report(env, inputs, flt, config, sampling)
    options = RenderOptions(
        view=View.BRIEF if brief else View.REPORT,
        show_all=show_all,
        with_sockets=with_sockets,
        limit=limit,
    )
    note_empty_selection(env, report, fmt)
    with paged(env) as shown:
        render(report, fmt or env.default_format, options, shown)
    context.exit(exit_status(context))


@main.command()
@snapshot_options
@filter_options
@output_options
@LIMIT_OPTION
@run_options
def sockets(
    inputs: Inputs, flt: SocketFilter, fmt: str | None, config: Path | None, limit: int | None
) -> None:
    """List the sockets, one per row: state, addresses, queues, timer, process."""
    env = environment()
    report = make_report(env, inputs, flt, config)
    note_empty_selection(env, report, fmt)
    with paged(env) as shown:
        render(
            report, fmt or env.default_format, RenderOptions(view=View.SOCKETS, limit=limit), shown
        )


@main.command()
@snapshot_options
@sampling_options
@filter_options
@output_options
@click.option(
    "--fail-on",
    type=click.Choice(["info", "warning", "critical"], case_sensitive=False),
    default="warning",
    show_default=True,
    help="The least severe finding that makes the exit code non-zero.",
)
@click.option(
    "--nagios",
    is_flag=True,
    help="Print one Nagios/Icinga status line with perfdata instead of the findings.",
)
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Filters that match no socket are fine: exit 0 instead of 3 (UNKNOWN).",
)
@run_options
@click.pass_context
def check(
    context: click.Context,
    inputs: Inputs,
    sampling: Sampling,
    flt: SocketFilter,
    fmt: str | None,
    config: Path | None,
    fail_on: str,
    nagios: bool,
    allow_empty: bool,
) -> None:
    """Print the findings and exit 0 (nothing reaches --fail-on), 1 (warning), 2 (critical)
    or 3 (input unreadable, or filters that match no socket: see --allow-empty), for CI and
    monitoring. Filters choose which findings count; each is judged on the whole host."""
    env = environment()
    threshold = Severity[fail_on.upper()]
    try:
        report = make_report(env, inputs, flt, config, sampling)
    except InputUnreadable as error:
        if nagios:
            env.stdout.write(unknown_line(error.format_message()) + "\n")
        raise
    code = report.exit_code(threshold)
    if report.empty_selection is not None and not allow_empty:
        # Nothing was looked at: a check with a typo in its filter must not read as healthy.
        problem = f"no socket matched {report.empty_selection}"
        if nagios:
            env.stdout.write(unknown_line(problem) + "\n")
        else:
            say(env, f"tcphealth: check: {problem} (--allow-empty accepts that): exit 3")
        context.exit(ExitCode.INPUT_UNREADABLE)
    if nagios:
        env.stdout.write(status_line(report, threshold) + "\n")
    else:
        try:
            render(report, fmt or env.default_format, RenderOptions(view=View.CHECK), env)
        except BrokenPipeError:  # `check | head -1` still answers with the verdict
            stdout_closed()
        say(
            env,
            f"tcphealth: check: {severity_counts(report.count_by_severity())} "
            f"(--fail-on {threshold.label.lower()}): exit {code.value}",
        )
    context.exit(exit_status(context, code))


@main.command()
@snapshot_options
@sampling_options
@filter_options
@click.option(
    "-o",
    "--output",
    type=click.Path(allow_dash=True, path_type=Path),
    default=None,
    help="Write the snapshot to FILE (atomically) instead of standard output.",
)
@run_options
@click.pass_context
def snapshot(
    context: click.Context,
    inputs: Inputs,
    sampling: Sampling,
    flt: SocketFilter,
    output: Path | None,
) -> None:
    """Save what tcphealth sees as a versioned JSON snapshot, to diagnose later or elsewhere.
    With --samples N, a series file of N samples, which --from replays with the same
    time-based verdicts. Ctrl-C during --samples writes the samples taken so far, marked
    partial, and exits 130."""
    from tcphealth.sources.snapshot_file import write_series, write_snapshot

    env = environment()
    series = sampling.samples > 1
    with input_errors():
        if series and inputs.from_file is None:
            with sample_progress(env, sampling.samples, sampling.interval) as progress:
                taken = take_samples(
                    inputs, sampling.samples, sampling.interval, progress, keep_at_least=1
                )
            samples = taken.samples
        elif series:
            samples = inputs.load_series(sampling.samples, sampling.interval)
        else:
            with sample_progress(env, 1, sampling.interval):
                samples = [inputs.load()]
    keep_until_exit(samples)
    # The notes of what is saved: about the sockets the filters kept, and that they were used.
    saved = [saved_selection(taken, flt) for taken in samples]
    report_notes(env, saved[-1].notes, samples[-1].skipped_lines)
    planned = sampling.samples if series else 1
    try:
        if series:
            write_series(saved, output, env.stdout, planned)
        else:
            write_snapshot(saved[0], output, env.stdout)
    except BrokenPipeError:
        raise  # the reader went away: the group ends the run quietly
    except OSError as error:
        raise Failure(f"cannot write {output}: {error.strerror or error}") from None
    if len(samples) < planned:
        say(
            env,
            f"tcphealth: interrupted after {len(samples)} of {plural(planned, 'sample')}; "
            + (f"wrote them to {inert(str(output))}" if output else "wrote them")
            + ", marked partial",
        )
        cut_short(context)
    elif output is not None and str(output) != "-" and not env.quiet:
        what = plural(len(samples), "sample") if series else "a snapshot"
        sockets = plural(len(saved[-1].sockets), "socket")
        say(env, f"tcphealth: wrote {what} ({sockets} in the last) to {inert(str(output))}")
    context.exit(exit_status(context))


@main.command()
@snapshot_options
@filter_options
@output_options
@click.option(
    "--interval",
    type=click.FloatRange(0.05, 86_400),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between samples.",
)
@click.option(
    "--count",
    # The top-level command calls its number of looks --samples: the same word works here.
    "--samples",
    "count",
    type=click.IntRange(0),
    default=0,
    metavar="N",
    help="Stop after N samples (default: until Ctrl-C).",
)
@click.option(
    "--window",
    type=click.IntRange(2, 1000),
    default=5,
    show_default=True,
    metavar="N",
    help="How many recent samples the diagnosis compares (what stayed, what was replaced).",
)
@click.option(
    "--sockets", "with_sockets", is_flag=True, help="Piped: also every socket, with its age."
)
@run_options
@click.pass_context
def watch(
    context: click.Context,
    inputs: Inputs,
    flt: SocketFilter,
    fmt: str | None,
    config: Path | None,
    interval: float,
    count: int,
    window: int,
    with_sockets: bool,
) -> None:
    """Look again every --interval seconds and follow each connection: how long it has been in
    its state, what stays, what is replaced, what grows. On a terminal the view is redrawn in
    place; piped, every sample is written at once (plain lines ending in sample=N, or one
    NDJSON object per sample). --from replays a series file. Ctrl-C ends with a summary on
    stderr and exit code 130."""
    from tcphealth.render import watch as watch_render

    thresholds, _ = load_config(config)
    env = environment()
    chosen = fmt or env.default_format
    replay = inputs.from_file is not None
    with input_errors():
        if replay:
            samples: Iterator[Snapshot] = iter(inputs.load_series())
        else:
            samples = inputs.live_samples(count or None, interval)
    view = watch_render.watch_view(
        chosen, RenderOptions(view=View.REPORT, with_sockets=with_sockets), env
    )
    last = None
    interrupted = False
    try:
        with input_errors():
            for last in follow(samples, flt, thresholds, window, count or None):
                for note in () if env.quiet else last.new_notes:
                    view.note(f"tcphealth: note: {note}")
                status = watch_render.status_line(
                    last.number, count or None, interval, replay, window
                )
                view.show(last.report, last.number, status)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        view.stop()
    if last is not None:
        seconds = last.report.host.taken_at - last.first_taken_at
        say(env, watch_render.summary_line(last.number, seconds, last.report))
    context.exit(EXIT_INTERRUPTED if interrupted else 0)


@main.command()
@click.argument("state", required=False, shell_complete=complete_state)
@click.option(
    "--codes",
    is_flag=True,
    help="List every finding code instead: its severities, the rule that makes it, what it means.",
)
@FROM_OPTION
@PROC_ROOT_OPTION
@FORMAT_OPTION
@run_options
def explain(
    state: str | None, codes: bool, from_file: str | None, proc_root: Path, fmt: str | None
) -> None:
    """What STATE means, how a connection gets there and out, what it says when connections
    stay in it, and how long this host's kernel lets them. STATE may be spelled as any tool
    prints it: close-wait, CLOSE_WAIT, ESTAB, SYN-RECV, FIN_WAIT_2, LISTENING, SYN_RCVD,
    FinWait2, or the /proc code (06). With --codes, the catalogue of finding codes."""
    if codes:
        _explain_codes(state, fmt)
        return
    if state is None:
        raise Failure("explain needs a STATE (e.g. close-wait), or --codes")
    parsed = state_asked_for(state)
    if parsed is None or parsed is TcpState.UNKNOWN:
        known = ", ".join(s.value for s in TCP_STATES)
        raise Failure(f"not a TCP state: {state!r} (one of {known}, in any spelling)")
    env = environment()
    with input_errors():
        # None where there is no /proc: the Linux defaults, which the explanation names as
        # assumed
        sysctls = Inputs(from_file=from_file, proc_root=proc_root).sysctls()
    with paged(env) as shown:
        output_format(fmt, env).explanation(states.explain(parsed, sysctls), shown)


def _explain_codes(state: str | None, fmt: str | None) -> None:
    from tcphealth.diagnose import catalogue  # only this command lists the codes

    if state is not None:
        raise Failure("explain --codes takes no STATE")
    env = environment()
    with paged(env) as shown:
        output_format(fmt, env).codes(catalogue.entries(), shown)


# What `config` can print: the thresholds as TOML (what the prose renderer writes for them),
# or as JSON; a table or plain lines it has not.
CONFIG_FORMATS = {"toml": "plain", "json": "json", "ndjson": "ndjson"}


@main.command(name="config")
@CONFIG_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(CONFIG_FORMATS)),
    default="toml",
    show_default=True,
    help="TOML that tcphealth reads back, or JSON.",
)
@run_options
def show_config(config: Path | None, fmt: str) -> None:
    """Print the thresholds in effect (defaults, overridden by the config file) as TOML that
    tcphealth reads back; a mistake in the file is one line naming the key, exit 3."""
    thresholds, origin = load_config(config)
    env = environment()
    output_format(CONFIG_FORMATS[fmt], env).thresholds(thresholds_report(thresholds, origin), env)


# --- metrics for Prometheus (issue 23) -----------------------------------------------------------

TOP_OPTION = click.option(
    "--top",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    metavar="N",
    help="Label at most N processes, listeners, destinations and findings per metric; the "
    "rest are summed under 'other' (bounds the number of series).",
)


@main.command()
@snapshot_options
@filter_options
@CONFIG_OPTION
@TOP_OPTION
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=None,
    help="Write to FILE (atomically: a temporary file renamed in place), e.g. "
    "/var/lib/prometheus/node-exporter/tcphealth.prom; default standard output.",
)
@click.option("--openmetrics", is_flag=True, help="OpenMetrics instead of the text format.")
@run_options
def metrics(
    inputs: Inputs,
    flt: SocketFilter,
    config: Path | None,
    top: int,
    output: Path | None,
    openmetrics: bool,
) -> None:
    """Print the Prometheus metrics of this host once (or of a snapshot or series given with
    --from), for node_exporter's textfile collector: sockets per state and process, findings
    by code and severity, listener queues, TIME_WAIT per destination, kernel counters."""
    import time

    from tcphealth import exporter
    from tcphealth.render.prometheus import exposition, self_families

    env = environment()
    thresholds, _ = load_config(config)
    started = time.monotonic()
    with input_errors():
        series = inputs.load_series()
    keep_until_exit(series)
    shown = apply_filter(series[-1], flt)
    report_notes(env, notes_for_selection(shown, flt.describe()), series[-1].skipped_lines)
    built = exporter.report_families(
        series, inputs.from_file or "-", flt=flt, thresholds=thresholds, top=top
    )
    # The duration of a live collection; a file's would measure only the reading.
    duration = None if inputs.from_file is not None else time.monotonic() - started
    data = exposition(
        [*built, *self_families(success=True, duration_seconds=duration)],
        openmetrics=openmetrics,
    )
    if output is None or str(output) == "-":
        env.stdout.write(data.decode("utf-8"))
        env.stdout.flush()
        return
    try:
        exporter.write_textfile(output, data)
    except OSError as error:
        raise Failure(f"cannot write {output}: {error.strerror or error}") from None


@main.command()
@snapshot_options
@filter_options
@CONFIG_OPTION
@TOP_OPTION
@click.option(
    "--listen",
    default="127.0.0.1:9945",
    show_default=True,
    metavar="ADDR:PORT",
    help="Where to listen: 127.0.0.1:9945, [::1]:9945, or :9945 for every address.",
)
@click.option(
    "--min-interval",
    type=click.FloatRange(0, 3600),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Collect at most once per SECONDS; scrapes in between get the last collection.",
)
@click.option(
    "--collect-timeout",
    type=click.FloatRange(1, 3600),
    default=120.0,
    show_default=True,
    metavar="SECONDS",
    help="A collection still running after SECONDS is killed and counts as failed.",
)
@run_options
def serve(
    inputs: Inputs,
    flt: SocketFilter,
    config: Path | None,
    top: int,
    listen: str,
    min_interval: float,
    collect_timeout: float,
) -> None:
    """Serve the metrics of 'tcphealth metrics' over HTTP for Prometheus (/metrics), collected
    at scrape time. Ends cleanly on SIGTERM or Ctrl-C."""
    import logging
    import signal
    import threading

    from tcphealth import exporter
    from tcphealth import serve as serving
    from tcphealth.render.prometheus import collect_path_family

    thresholds, _ = load_config(config)
    try:
        host, port = serving.parse_listen(listen)
    except ValueError as error:
        raise click.UsageError(f"--listen: {error}") from None
    logging.basicConfig(level=logging.INFO, format="tcphealth serve: %(message)s")

    # The lean path: this host's sockets as columns, objects only where a rule needs them
    # (tcphealth.sources.lean), for the plain case -- live, netlink, no filter, this
    # namespace or all when there is no other. Anything else, or a dump the columns do not
    # read, is collected and reported as by `tcphealth metrics`.
    # Why not, where it is not (tcphealth_collect_path_info's reason: fixed phrases).
    not_lean = (
        "--from a file"
        if inputs.from_file is not None
        else "a filter"
        if flt.active
        else f"--source {inputs.source}"
        if inputs.source not in ("auto", "netlink")
        else "--no-processes"
        if inputs.no_processes
        else "--netns NAME"
        if inputs.netns is not None and inputs.netns not in ("auto", "all", "self")
        else None
    )
    lean_scope = (inputs.netns or "auto") if not_lean is None else None

    if lean_scope is not None:
        # Loaded here, in the server, once: each scrape's forked child inherits numpy and
        # the columns instead of importing them again (0.2 CPU-s a scrape).
        from tcphealth.sources import lean

    def collect() -> list[Any]:
        why = not_lean or ""
        if lean_scope is not None:
            collected = lean.collect(inputs.proc_root, scope=lean_scope, node_root=inputs.node_root)
            if not isinstance(collected, str):
                snapshot, table = collected
                return [
                    *exporter.table_families_of(
                        snapshot, table, lazy=lean.BULK_CODES, thresholds=thresholds, top=top
                    ),
                    collect_path_family("lean"),
                ]
            why = collected
        series = inputs.load_series()
        return [
            *exporter.report_families(
                series, inputs.from_file or "-", flt=flt, thresholds=thresholds, top=top
            ),
            collect_path_family("full", why),
        ]

    # Descriptor tables are kept from one scrape to the next: only those that changed are read
    # again (tcphealth.sources.fd_cache says what that allows); a --from file has none.
    carried = None
    if inputs.from_file is None:
        from tcphealth.sources import background_scan, dump_relay, fd_cache

        # Judged by CPU per scrape, not by wall time: no relaying child for the dump, and the
        # walk of the kept descriptor tables done by the collecting process itself.
        dump_relay.received_in_place()
        background_scan.walked_in_place()

        if fd_cache.enable():
            carried = serving.Carried(fd_cache.handed_back, fd_cache.adopt)
        else:
            serving.LOG.info(
                "every scrape reads every process's descriptors: this kernel does not count "
                "them in stat(/proc/PID/fd) (Linux 6.2 and later do)"
            )
    shared = serving.SharedCollection(
        serving.noting_path(serving.forked(collect, collect_timeout, carried)), min_interval
    )
    app = serving.make_app(serving.make_registry(shared), min_interval)
    try:
        server = serving.make_http_server(host, port, app)
    except OSError as error:
        raise Failure(f"cannot listen on {listen}: {error.strerror or error}") from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, frame: stop.set())
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    serving.LOG.info("listening on http://%s:%d/metrics", shown, bound_port)
    serving.serve_until(server, stop)
    serving.LOG.info("stopped after %s", plural(shared.collections, "collection"))


COMPLETION_SHELLS = ("bash", "zsh", "fish")


@main.command()
@click.argument("shell", type=click.Choice(COMPLETION_SHELLS))
def completion(shell: str) -> None:
    """Print the script that makes SHELL complete tcphealth's commands, options, formats and
    state names. Load it now with eval "$(tcphealth completion bash)" (zsh the same; fish:
    tcphealth completion fish | source), or put that line in the shell's start-up file."""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # every choice is a shell click knows
    click.echo(completer(main, {}, "tcphealth", "_TCPHEALTH_COMPLETE").source())
