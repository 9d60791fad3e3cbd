"""Thresholds that turn counts into severities, and the TOML file that overrides them.

The file is optional. Without ``--config FILE`` we look for ``./tcphealth.toml``, then
``/etc/tcphealth.toml``; the first that exists wins, and the defaults below fill every key it
leaves out. All keys live in one ``[thresholds]`` table::

    [thresholds]
    close_wait_warning = 20
    fd_critical_ratio = 0.9

A mistake in the file is an error, never silently ignored: an unknown key (a typo would
otherwise leave the default in force unnoticed), a value of the wrong type, a negative number,
or a warning level above its critical level each raise :class:`ConfigError` naming the file and
the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tcphealth.errors import InputError
from tcphealth.reading import Limit, read_input

TABLE = "thresholds"
SEARCH_PATHS: tuple[Path, ...] = (Path("tcphealth.toml"), Path("/etc/tcphealth.toml"))
# A thresholds file is a few dozen lines; anything this large is not one.
CONFIG_LIMIT = Limit(1 << 20, "a thresholds file")


class ConfigError(Exception):
    """The configuration file cannot be used. The message is one line naming file and key."""


_T = TypeVar("_T", int, float)


def _knob(default: _T, help: str) -> _T:
    """A threshold field with its one-line documentation (printed by thresholds_as_toml)."""
    value: _T = field(default=default, metadata={"help": help})
    return value


@dataclass(frozen=True)
class Thresholds:
    """When a pattern of sockets becomes a WARNING or a CRITICAL finding.

    Counts are numbers of sockets; ``*_ratio`` values are fractions (0.8 = 80 %); byte sizes
    are bytes. Below the warning level a rule says nothing: healthy sockets make no noise.
    Each field's ``help`` metadata documents it; :func:`threshold_help` returns them all.
    """

    close_wait_warning: int = _knob(
        10,
        "CLOSE_WAIT held by one process (per set of pids), or never accepted on one listener "
        "with room in its queue: warn from this many.",
    )
    close_wait_critical: int = _knob(500, "The same CLOSE_WAIT counts: critical from this many.")
    close_wait_unread_warning: int = _knob(
        2,
        "CLOSE_WAIT on the server's end holding data besides the FIN that nobody has read "
        "(receive queue over 1 byte), per holder or among sockets whose holder is not known: "
        "warn from this many, "
        "below close_wait_warning. The queue is a fact of one look: the data was neither read "
        "nor the socket closed.",
    )
    close_wait_leak_seconds: float = _knob(
        60.0,
        "CLOSE_WAIT held by a process is called a leak only when one of its sockets has been "
        "in CLOSE_WAIT at least this long (seen over samples, or tcp_info's floor); younger, "
        "it may be an application slow to close.",
    )
    stuck_seconds: float = _knob(
        60.0,
        "FIN_WAIT2 held by a process, a zero window, an unread receive queue: called lasting "
        "(peers that never close, a reader that stopped) only once it has lasted at least this "
        "long (seen over samples, or tcp_info's floor); shorter, it may be a passing moment.",
    )
    accept_queue_warning_ratio: float = _knob(
        0.8,
        "Listener accept queue / listen backlog: warn from this fill. The kernel queues "
        "backlog+1 before dropping.",
    )
    accept_queue_critical_ratio: float = _knob(
        1.0, "Accept queue fill: critical from this (1.0: the next connection may be dropped)."
    )
    syn_recv_warning: int = _knob(
        64, "SYN_RECV on one listener whose queue is not full (final ACKs missing): warn."
    )
    syn_recv_critical: int = _knob(1024, "SYN_RECV on one listener with room: critical.")
    syn_sent_min_retransmits: int = _knob(
        2, "A SYN_SENT counts as unanswered once its SYN was resent this often (2: ~3 s)."
    )
    syn_sent_warning: int = _knob(1, "Unanswered SYN_SENT to one address:port: warn.")
    syn_sent_critical: int = _knob(50, "Unanswered SYN_SENT to one address:port: critical.")
    closing_min_retransmits: int = _knob(
        2, "A FIN_WAIT1 / CLOSING / LAST_ACK counts once its FIN was resent this often."
    )
    closing_warning: int = _knob(10, "Such sockets in one state, host-wide: warn.")
    closing_critical: int = _knob(1000, "Unacknowledged FINs in one state, host-wide: critical.")
    listen_overflowed_warning: int = _knob(
        100,
        "Accept-queue overflows since boot (ListenOverflows) where a paste's whole listing "
        "holds one listener, with a backlog under 128: warn from this many, taking them to "
        "be that listener's.",
    )
    peer_loss_warning: int = _knob(
        3,
        "Connections with one peer address that resent a segment, over a paste's captures (or "
        "one look), among them resends in the handshake (SYN_SENT / SYN_RECV) and in the close "
        "(FIN_WAIT1 / CLOSING / LAST_ACK): warn from this many while one still resends -- the "
        "path to that peer loses packets.",
    )
    close_held_warning: int = _knob(
        100,
        "TCP sockets in CLOSE (BSD: CLOSED) held by one process -- connections that ended, "
        "failed or never began, whose descriptors it keeps -- or counted host-wide without "
        "their holder: warn from this many (a descriptor leak).",
    )
    close_held_critical: int = _knob(
        1000,
        "CLOSE held by one process: critical from this many, or from fd_warning_ratio of its "
        "descriptor limit where that is known.",
    )
    fin_wait2_held_warning: int = _knob(
        10, "FIN_WAIT2 still held by one process (half-closed, no timer ends it): warn."
    )
    fin_wait2_held_critical: int = _knob(500, "FIN_WAIT2 held by one process: critical.")
    fin_wait2_orphan_warning: int = _knob(
        5000, "Orphaned FIN_WAIT2 host-wide (each ends after tcp_fin_timeout): warn."
    )
    time_wait_ports_warning_ratio: float = _knob(
        0.5,
        "TIME_WAIT from one local address to one remote address:port, as a fraction of the "
        "ephemeral port range: warn.",
    )
    time_wait_ports_critical_ratio: float = _knob(
        0.9, "TIME_WAIT toward one destination / ephemeral ports: critical."
    )
    time_wait_counted_warning: int = _knob(
        1000,
        "TIME_WAIT a paste counted itself (wc -l, grep -c) beyond its rows: warn from this "
        "many (connections closed per request, not reused).",
    )
    time_wait_buckets_warning_ratio: float = _knob(
        0.8, "TIME_WAIT host-wide as a fraction of tcp_max_tw_buckets: warn."
    )
    time_wait_buckets_critical_ratio: float = _knob(
        1.0, "TIME_WAIT / tcp_max_tw_buckets: critical (1.0: at the ceiling)."
    )
    fd_warning_ratio: float = _knob(
        0.8, "Open descriptors of a process / its soft limit (RLIMIT_NOFILE): warn."
    )
    fd_critical_ratio: float = _knob(0.95, "Open descriptors / soft limit: critical.")
    established_recv_queue_bytes: int = _knob(
        524288, "ESTABLISHED socket with this many bytes received and unread: not reading."
    )
    established_min_retransmits: int = _knob(
        3,
        "ESTABLISHED socket with unacknowledged data counts as stalled after this many "
        "consecutive timeouts (3: at least ~1.4 s without an ACK).",
    )
    established_warning: int = _knob(
        1, "Stalled / unread / zero-window ESTABLISHED per process or peer: warn."
    )
    established_critical: int = _knob(
        100, "Stalled / unread / zero-window ESTABLISHED per process or peer: critical."
    )
    established_idle_seconds: int = _knob(
        3600,
        "ESTABLISHED with nothing sent or received for this long and no keepalive timer: "
        "no timer ends it if the peer is gone (info).",
    )
    established_pile_warning: int = _knob(
        500,
        "ESTABLISHED connections one process (or, counted by a paste, one selection) holds to "
        "one remote address:port, as a client: warn from this many. Client pools hold a few to "
        "a few dozen per destination by default and servers admit a few hundred clients in all "
        "(PostgreSQL 100, MySQL 151): this many is a pool not reused, or a leak.",
    )
    counted_growth_warning: int = _knob(
        500,
        "The paste's own counts of one selection (any state), printed by the same command "
        "two or more times, rising at every step by this many in all: warn (a build-up).",
    )
    ports_warning_ratio: float = _knob(
        0.8,
        "Sockets in any state from one local address to one remote address:port, as a fraction "
        "of the ephemeral ports not reserved (also one process's bound, unconnected sockets, as "
        "a fraction of the port range): warn.",
    )
    ports_critical_ratio: float = _knob(
        0.95,
        "Sockets toward one destination (or one process's bound, unconnected sockets) / "
        "usable ephemeral ports: critical.",
    )
    kernel_limit_warning_ratio: float = _knob(
        0.8,
        "Orphans / tcp_max_orphans, conntrack entries / nf_conntrack_max: warn.",
    )
    kernel_limit_critical_ratio: float = _knob(
        1.0, "The same host-wide ratios: critical (1.0: the kernel acts on the limit)."
    )

    persist_samples: int = _knob(
        3,
        "With --samples or watch: a SYN_SENT seen in this many samples in a row is stuck, "
        "and a process's count must rise in this many to be growing.",
    )
    churn_ratio: float = _knob(
        0.8,
        "With --samples or watch: CLOSE_WAIT of one process of which this share is replaced "
        "between samples, or closed between the first of 3+ samples and the last (and fewer "
        "than close_wait_warning stay), is a slow close, not a leak.",
    )
    growth_per_minute_warning: float = _knob(
        60.0,
        "With --samples or watch: a process whose ESTABLISHED, CLOSE_WAIT, FIN_WAIT2, SYN_SENT, "
        "FIN_WAIT1 or LAST_ACK count rises in every sample by this many per minute: warn.",
    )


def threshold_help() -> dict[str, str]:
    """Each threshold's name and its one-line documentation, in declaration order."""
    return {f.name: str(f.metadata["help"]) for f in dataclasses.fields(Thresholds)}


# (warning key, critical key): the warning level must not exceed the critical one.
_ORDERED_PAIRS: tuple[tuple[str, str], ...] = (
    ("close_wait_warning", "close_wait_critical"),
    ("accept_queue_warning_ratio", "accept_queue_critical_ratio"),
    ("syn_recv_warning", "syn_recv_critical"),
    ("syn_sent_warning", "syn_sent_critical"),
    ("closing_warning", "closing_critical"),
    ("close_held_warning", "close_held_critical"),
    ("fin_wait2_held_warning", "fin_wait2_held_critical"),
    ("time_wait_ports_warning_ratio", "time_wait_ports_critical_ratio"),
    ("time_wait_buckets_warning_ratio", "time_wait_buckets_critical_ratio"),
    ("fd_warning_ratio", "fd_critical_ratio"),
    ("established_warning", "established_critical"),
)


# What each kind of threshold may be. A count of 0 would make a finding of no socket at all,
# and a ratio of 0 one of an empty queue: neither is a threshold, so both are refused, as is
# anything not finite (nan compares false with everything and silently turns a rule off).
COUNT_MAX = 1_000_000_000
RATIO_MAX = 1000.0


def _allowed(key: str) -> tuple[float, float, str]:
    """(lowest, highest, why) for the value of ``key``."""
    if key.endswith("_min_retransmits"):
        # The kernel counts these in 8 bits; 0 means "any socket in the state".
        return 0, 255, "a retransmission count from 0 to 255"
    if key == "churn_ratio":
        return math.ulp(0.0), 1.0, "a share above 0 and at most 1"
    if key.endswith("_ratio"):
        return math.ulp(0.0), RATIO_MAX, f"a ratio above 0 and at most {RATIO_MAX:g}"
    if key == "growth_per_minute_warning":
        return math.ulp(0.0), float(COUNT_MAX), "a rate above 0"
    if key == "established_recv_queue_bytes":
        return 1, 0xFFFF_FFFF, "a byte count from 1 to 4294967295 (the queue is 32 bits)"
    return 1, COUNT_MAX, f"a count from 1 to {COUNT_MAX:,}"


def _field_types() -> dict[str, type]:
    defaults = Thresholds()
    return {f.name: type(getattr(defaults, f.name)) for f in dataclasses.fields(Thresholds)}


def thresholds_from_mapping(values: dict[str, Any], *, origin: str) -> Thresholds:
    """Validate ``values`` (the ``[thresholds]`` table) over the defaults.

    ``origin`` names the file in error messages.
    """
    types = _field_types()
    # Any: the values go to dataclasses.replace(), which mypy cannot check key by key; the
    # loop below checks each against the field's own type instead.
    checked: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{origin}: {TABLE}.{key}"
        if key not in types:
            close = difflib.get_close_matches(key, types, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"{where}: unknown key ({hint}known: {', '.join(sorted(types))})")
        expected = types[key]
        # bool is a subclass of int in Python; `true` is never a count.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__}")
        if expected is int and not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        low, high, what = _allowed(key)
        if not (math.isfinite(value) and low <= value <= high):
            raise ConfigError(f"{where}: must be {what}, got {value!r}")
        checked[key] = float(value) if expected is float else value
    thresholds = dataclasses.replace(Thresholds(), **checked)
    for warning_key, critical_key in _ORDERED_PAIRS:
        warning, critical = getattr(thresholds, warning_key), getattr(thresholds, critical_key)
        if warning > critical:
            # Name the key the file set; if it set both, the warning one.
            key = warning_key if warning_key in values else critical_key
            raise ConfigError(
                f"{origin}: {TABLE}.{key}: {warning_key} ({warning}) is above "
                f"{critical_key} ({critical})"
            )
    return thresholds


# A thresholds file is one flat table. tomllib recurses once per level of nesting and builds
# a table per dotted key part, so depth is refused before parsing: 100,000 '[' in a 1 MiB
# file was a RecursionError, a key of 500,000 parts a gigabyte of tables.
MAX_DEPTH = 16
_BRACKETS = re.compile(r"[\[\]{}]")


def _check_shape(text: str, origin: str) -> None:
    depth = 0
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.split("#", 1)[0] if '"' not in line and "'" not in line else line
        key = code.split("=", 1)[0]
        if key.count(".") > MAX_DEPTH:
            raise ConfigError(
                f"{origin}:{number}: a key of more than {MAX_DEPTH} dotted parts; "
                "a thresholds file holds one flat table"
            )
        for bracket in _BRACKETS.findall(code):
            depth += 1 if bracket in "[{" else -1
            if depth > MAX_DEPTH:
                raise ConfigError(
                    f"{origin}:{number}: nested more than {MAX_DEPTH} deep; "
                    "a thresholds file holds one flat table"
                )
        depth = max(depth, 0)


def parse_thresholds(text: str, *, origin: str) -> Thresholds:
    """Parse TOML text holding an optional ``[thresholds]`` table."""
    import tomllib  # here: most runs read no configuration file

    _check_shape(text, origin)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{origin}: not valid TOML: {error}") from error
    except (RecursionError, MemoryError):  # what _check_shape did not foresee
        raise ConfigError(f"{origin}: not a thresholds file: nested too deeply") from None
    unknown_tables = sorted(key for key in document if key != TABLE)
    if unknown_tables:
        raise ConfigError(f"{origin}: {unknown_tables[0]}: unknown key (expected [{TABLE}])")
    table = document.get(TABLE, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: {TABLE}: expected a table")
    return thresholds_from_mapping(table, origin=origin)


def load_thresholds(path: Path | None, *, search: bool = True) -> tuple[Thresholds, Path | None]:
    """Read thresholds from ``path``, or from the first file of :data:`SEARCH_PATHS`.

    Returns the thresholds and the file they came from (``None``: defaults only). A ``path``
    given explicitly must exist; the search paths may be missing. ``search=False`` skips the
    search (defaults unless ``path`` is given).
    """
    if path is not None:
        candidates: tuple[Path, ...] = (path,)
    elif search:
        candidates = tuple(p for p in SEARCH_PATHS if p.is_file())
    else:
        candidates = ()
    if not candidates:
        return Thresholds(), None
    chosen = candidates[0]
    try:
        # Bounded, and without waiting on a named pipe: --config /dev/zero hung before.
        text = read_input(chosen, None, CONFIG_LIMIT, allow_empty=True).data.decode("utf-8")
    except InputError as error:
        raise ConfigError(f"{chosen}: cannot read: {error.problem}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{chosen}: cannot read: {error}") from error
    return parse_thresholds(text, origin=str(chosen)), chosen


def thresholds_as_toml(thresholds: Thresholds) -> str:
    """The effective thresholds as a TOML document that :func:`parse_thresholds` reads back,
    each key under a comment that says what it is."""
    lines = [f"[{TABLE}]"]
    for name, help_text in threshold_help().items():
        lines.append(f"# {help_text}")
        lines.append(f"{name} = {getattr(thresholds, name)!r}")
    return "\n".join(lines) + "\n"
