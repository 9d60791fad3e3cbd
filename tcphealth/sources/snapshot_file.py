"""Save a :class:`Snapshot` as versioned JSON and read it back, losing nothing.

The file is ``{"format": "tcphealth.snapshot", "version": 1, "snapshot": {...}}`` with sorted
keys and a trailing newline, so two saves of the same snapshot are byte-identical and diff well.
Everything is indented one space per level, except the sockets: each is one line (its keys
sorted too), so a snapshot of 300,000 sockets is written one socket at a time, in linear time
and without building the whole text in memory, and ``grep``/``diff`` still see one socket per
line. Files whose sockets are indented like the rest (written before) read the same.

The codec is driven by the dataclass type hints of :mod:`tcphealth.model`, so a field added
there is saved and loaded without touching this module. Loading checks every value against its
declared type: a file of the wrong shape is a :class:`SnapshotFormatError` naming the field,
never a half-built snapshot or a ``KeyError`` deep in the diagnosis.
"""

from __future__ import annotations

import codecs
import dataclasses
import enum
import errno
import functools
import ipaddress
import itertools
import json
import math
import operator
import os
import stat
import sys
import tempfile
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Union

from tcphealth import bounds, model
from tcphealth.errors import InputError, SnapshotFormatError
from tcphealth.model import Snapshot
from tcphealth.reading import Limit, iter_input, where_of
from tcphealth.sources import json_stream

FORMAT_NAME = "tcphealth.snapshot"
# 2: network namespaces (``namespaces``; ``netns`` on sockets, where each process lives and
# runs), and the sysctls of the limits (tcp_mem, tcp_max_syn_backlog, reserved ports,
# nf_conntrack_max). A snapshot without them is written as version 1, byte for byte as
# before, so older tcphealth still reads it; one with them says 2, which older tcphealth
# refuses by name. tcp_info's busy, rwnd-limited and sndbuf-limited times (issue #25) came with
# version 2 too, and so did a socket's drops (skmem): left out where unknown, and a file that
# has them says 2.
FORMAT_VERSION = 2
_FORMAT_VERSION_WITHOUT_NAMESPACES = 1

# Fields added with version 2, left out of the file while they hold their defaults.
_LEFT_OUT_WHEN_DEFAULT: dict[str, tuple[tuple[str, object], ...]] = {
    # earlier_listings is never written (see snapshot_json_chunks): a snapshot is one look.
    "Snapshot": (
        ("namespaces", ()),
        ("reported", ()),
        ("earlier_listings", ()),
        ("earlier_state_counts", {}),
        ("elisions", ()),
        ("kernel_log", ()),
        ("listed_state", None),
        ("every_listener_shown", False),
        ("error_lines", ()),
    ),
    # A paste's host that was no address (a name, a mask); no file from a live run has one.
    "Endpoint": (("name", None),),
    # The peer a pasted count's grep names (session 14): left out where none, as before.
    "ReportedCount": (("peer", None),),
    # Who logged an error line, and whether it named ports (session 16).
    "ErrorLine": (("program", None), ("pid", None), ("ports_named", False)),
    "Socket": (("netns", None), ("drops", None)),
    "Process": (
        ("netns", None),
        ("container", None),
        ("unit", None),
        ("host_network", False),
        ("highest_fd", None),
    ),
    # The limits of issue #25: a snapshot that has none of them stays as it was.
    "Sysctls": (
        ("tcp_max_syn_backlog", None),
        ("tcp_mem", None),
        ("ip_local_reserved_ports", None),
        ("nf_conntrack_max", None),
    ),
    # False only for a paste, whose file time is not its capture time.
    "HostInfo": (("taken_at_known", True),),
    "TcpInfo": (
        ("busy_time_us", None),
        ("rwnd_limited_us", None),
        ("sndbuf_limited_us", None),
    ),
}
# Several samples of one host, oldest first (tcphealth snapshot --samples N): the file is
# ``{"format": "tcphealth.series", "version": 1, "samples": [...]}`` where each sample is a
# whole snapshot document as above, one per line.
SERIES_FORMAT_NAME = "tcphealth.series"
SERIES_FORMAT_VERSION = 1

# Refuse before parsing: a snapshot of 300,000 sockets is about 150 MB of JSON.
MAX_SNAPSHOT_BYTES = 1 << 30
SNAPSHOT_LIMIT = Limit(MAX_SNAPSHOT_BYTES, "a snapshot")


# --- encoding ----------------------------------------------------------------------------------


@functools.cache
def _field_names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _encode(value: Any) -> Any:
    if isinstance(value, enum.Enum):  # before str: str-based enums are str instances too
        return value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, tuple | list):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _encode(item) for key, item in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        record = {name: _encode(getattr(value, name)) for name in _field_names(type(value))}
        for name, default in _LEFT_OUT_WHEN_DEFAULT.get(type(value).__name__, ()):
            if getattr(value, name) == default:
                del record[name]
        return record
    raise TypeError(f"cannot encode {type(value).__name__}")


# Stands for the sockets in the document's text until they are written in its place.
_SOCKETS_HERE = "\u0000tcphealth: the sockets go here\u0000"
_SOCKET_INDENT = "\n   "  # the items of snapshot.sockets sit three levels deep


def snapshot_to_json(snapshot: Snapshot) -> str:
    return "".join(snapshot_json_chunks(snapshot))


def snapshot_json_chunks(snapshot: Snapshot) -> Iterator[str]:
    """The text of the snapshot file, in pieces: the document around the sockets, then one
    line per socket."""
    # A paste's earlier listings are compared when it is diagnosed; the file keeps the one look.
    body = _encode(dataclasses.replace(snapshot, sockets=(), earlier_listings=()))
    body["sockets"] = _SOCKETS_HERE
    document = {"format": FORMAT_NAME, "version": _version_of(snapshot), "snapshot": body}
    text = json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    marker = json.dumps(_SOCKETS_HERE, ensure_ascii=False)
    head, tail = text.split(marker)  # the marker cannot occur in any value: exactly two parts
    yield _utf8_safe(head)
    if not snapshot.sockets:
        yield "[]"
    else:
        record = _RecordEncoder().for_class(model.Socket)
        # The records come with their keys sorted, and are trees just built (no cycles to
        # look for).
        dump = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
        separator = "[" + _SOCKET_INDENT
        for sock in snapshot.sockets:
            fields = record(sock)
            if fields["netns"] is None:  # see _LEFT_OUT_WHEN_DEFAULT
                del fields["netns"]
            if fields["drops"] is None:
                del fields["drops"]
            yield _utf8_safe(separator + dump(fields))
            separator = "," + _SOCKET_INDENT
        yield "\n  ]"
    yield _utf8_safe(tail)


def _version_of(snapshot: Snapshot) -> int:
    if snapshot.namespaces or any(sock.netns is not None for sock in snapshot.sockets[:1]):
        return FORMAT_VERSION
    # A version-1 reader refuses a field it does not know: say 2 where the limits are there.
    limits = _LEFT_OUT_WHEN_DEFAULT["Sysctls"]
    if any(getattr(snapshot.sysctls, name) != default for name, default in limits):
        return FORMAT_VERSION
    if not snapshot.host.taken_at_known:  # a paste's: the field is written, so version 2
        return FORMAT_VERSION
    if snapshot.kernel_log or snapshot.error_lines:
        return FORMAT_VERSION
    if any(sock.drops is not None for sock in snapshot.sockets):
        return FORMAT_VERSION
    # The first socket with tcp_info tells for the dump: one kernel gave them all.
    info = next((sock.tcp_info for sock in snapshot.sockets if sock.tcp_info is not None), None)
    if info is not None and any(
        getattr(info, name) != default for name, default in _LEFT_OUT_WHEN_DEFAULT["TcpInfo"]
    ):
        return FORMAT_VERSION
    return _FORMAT_VERSION_WITHOUT_NAMESPACES


class _RecordEncoder:
    """Gives what :func:`_encode` gives for dataclass instances -- the same JSON once dumped
    -- for the many sockets of one file: the work of looking at the type hints is done once
    per class, and each address object's text is made once (sources share address objects
    between sockets; ``str()`` of an address is a few microseconds of Python)."""

    def __init__(self) -> None:
        self._by_class: dict[type[Any], Callable[[Any], dict[str, Any]]] = {}
        # id(address) -> (the address, kept alive so that its id stays unique; its text)
        self._address_texts: dict[int, tuple[object, str]] = {}

    def for_class(self, cls: type[Any]) -> Callable[[Any], dict[str, Any]]:
        known = self._by_class.get(cls)
        if known is not None:
            return known
        hints = typing.get_type_hints(cls, vars(model))
        # In sorted order, so that the records need no sorting when dumped.
        names = tuple(sorted(field.name for field in dataclasses.fields(cls)))
        convert: list[tuple[str, Callable[[Any], Any]]] = []
        for name in names:
            converter = self._converter(hints[name])
            if converter is not None:
                convert.append((name, converter))
        values_of = operator.attrgetter(*names)
        # Fields added later, left out while at their defaults (see _LEFT_OUT_WHEN_DEFAULT);
        # a socket's netns is left out by the writer itself.
        left_out = () if cls is model.Socket else _LEFT_OUT_WHEN_DEFAULT.get(cls.__name__, ())

        def record(value: Any) -> dict[str, Any]:
            document = dict(zip(names, values_of(value), strict=True))
            for name, converter in convert:
                document[name] = converter(document[name])
            for name, default in left_out:
                if document[name] == default:
                    del document[name]
            return document

        self._by_class[cls] = record
        return record

    def _converter(self, hint: Any) -> Callable[[Any], Any] | None:
        """None when json writes a value of this type exactly as :func:`_encode` would."""
        origin = typing.get_origin(hint)
        if origin in (Union, types.UnionType):
            options = [option for option in typing.get_args(hint) if option is not type(None)]
            if set(options) == {ipaddress.IPv4Address, ipaddress.IPv6Address}:
                inner: Callable[[Any], Any] | None = self._address
            elif len(options) == 1:
                inner = self._converter(options[0])
            else:
                inner = _encode if any(self._converter(o) is not None for o in options) else None
            if inner is None:
                return None
            convert = inner
            return lambda value: None if value is None else convert(value)
        if origin is tuple:
            args = [arg for arg in typing.get_args(hint) if arg is not Ellipsis]
            return None if all(self._converter(arg) is None for arg in args) else _encode
        if hint in (int, float, str, bool, type(None)):
            return None  # json writes a float as repr() does, which is what _encode leaves
        if isinstance(hint, type) and issubclass(hint, enum.Enum) and issubclass(hint, str):
            return None  # a str enum is written as its value
        if hint in (ipaddress.IPv4Address, ipaddress.IPv6Address):
            return self._address
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            return self.for_class(hint)
        return _encode

    def _address(self, address: Any) -> str:
        known = self._address_texts.get(id(address))
        if known is not None:
            return known[1]
        text = str(address)
        if len(self._address_texts) < _ADDRESS_TEXTS_KEPT:
            self._address_texts[id(address)] = (address, text)
        return text


_ADDRESS_TEXTS_KEPT = 1 << 16


def _utf8_safe(text: str) -> str:
    """JSON text that can be written as UTF-8. A lone surrogate (how Python spells a byte that
    was not UTF-8, e.g. in a file name) has no UTF-8 form; it can only sit inside a JSON
    string, where the escape "\\udcff" that backslashreplace writes reads back as the very
    same character."""
    if text.isascii():  # the usual case, and a quick check
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def series_to_json(samples: list[Snapshot], planned: int | None = None) -> str:
    """A series file: the header, then one compact snapshot document per line. With fewer
    samples than ``planned`` (the run was interrupted), the header says ``"partial": true``
    and how many were planned; a reader takes the samples there are."""
    lines = [
        json.dumps(
            {"format": FORMAT_NAME, "version": _version_of(sample), "snapshot": _encode(sample)},
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for sample in samples
    ]
    partial = (
        f'"partial": true, "samples_planned": {planned}, '
        if planned is not None and len(samples) < planned
        else ""
    )
    head = (
        f'{{"format": "{SERIES_FORMAT_NAME}", "version": {SERIES_FORMAT_VERSION}, '
        f'{partial}"samples": [\n'
    )
    return _utf8_safe(head + ",\n".join(lines) + "\n]}\n")


def write_snapshot(snapshot: Snapshot, path: Path | None, stdout: IO[str] | None = None) -> None:
    """Write to ``path`` atomically (temporary file, then rename), or to stdout when ``None``
    or ``-``: a failed run never leaves a half-written file or truncates the previous one."""
    write_chunks(snapshot_json_chunks(snapshot), path, stdout)


def write_series(
    samples: list[Snapshot],
    path: Path | None,
    stdout: IO[str] | None = None,
    planned: int | None = None,
) -> None:
    """Write a series file, as :func:`write_snapshot` writes a snapshot (``planned``: see
    :func:`series_to_json`)."""
    write_chunks([series_to_json(samples, planned)], path, stdout)


def write_chunks(chunks: Iterable[str], path: Path | None, stdout: IO[str] | None = None) -> None:
    """Write the text made of ``chunks`` to ``path`` through a temporary file renamed into
    place, or to stdout. The chunks are written as they come: a snapshot of 300,000 sockets
    is never one string in memory.

    A ``path`` that is a character device or a named pipe (``/dev/null``, ``/dev/stdout``,
    ``<(...)``) is written into: renaming a file over it would replace the device node
    itself, and as root ``-o /dev/null`` would have turned /dev/null into a file."""
    if path is None or str(path) == "-":
        out = stdout or sys.stdout
        for chunk in chunks:
            out.write(chunk)
        return
    if _is_stream(path):
        _write_into(path, chunks)
        return
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "a directory, not a file")
    directory = path.parent if str(path.parent) else Path(".")
    # The temporary name stays within a file system's 255 bytes, however long the name is.
    stem = path.name.encode("utf-8", "surrogateescape")[:64].decode("utf-8", "ignore")
    fd, temporary = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the rename makes it the snapshot
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _is_stream(path: Path) -> bool:
    try:
        mode = os.stat(path).st_mode  # follows a link: /dev/stdout is one
    except OSError:
        return False  # missing (or unreadable): the rename decides
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _write_into(path: Path, chunks: Iterable[str]) -> None:
    # O_NONBLOCK: a named pipe nobody reads fails at once (ENXIO) instead of waiting forever.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ENXIO:
            raise OSError(error.errno, "a named pipe that nobody reads") from None
        raise
    try:
        os.set_blocking(fd, True)
        for chunk in chunks:
            view = memoryview(chunk.encode("utf-8"))
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


# --- decoding ----------------------------------------------------------------------------------


class _Decoder:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, problem: str) -> SnapshotFormatError:
        return SnapshotFormatError(self.where, f"{path}: {problem}")

    def decode(self, value: Any, hint: Any, path: str) -> Any:
        origin = typing.get_origin(hint)
        if origin in (Union, types.UnionType):
            options = typing.get_args(hint)
            if value is None:
                if type(None) in options:
                    return None
                raise self.fail(path, "must not be null")
            errors: list[SnapshotFormatError] = []
            for option in options:
                if option is type(None):
                    continue
                try:
                    return self.decode(value, option, path)
                except SnapshotFormatError as error:
                    errors.append(error)
            raise errors[0]
        if origin is tuple:
            if not isinstance(value, list):
                raise self.fail(path, f"expected a list, got {_json_type(value)}")
            args = typing.get_args(hint)
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(self.decode(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
            if len(value) != len(args):
                raise self.fail(path, f"expected {len(args)} items, got {len(value)}")
            return tuple(
                self.decode(v, a, f"{path}[{i}]")
                for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        if origin is dict:
            if not isinstance(value, dict):
                raise self.fail(path, f"expected an object, got {_json_type(value)}")
            _, value_hint = typing.get_args(hint)
            return {str(k): self.decode(v, value_hint, f"{path}.{k}") for k, v in value.items()}
        if hint is typing.Any:
            return value
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            try:
                return hint(value)
            except ValueError:
                allowed = ", ".join(str(member.value) for member in hint)
                raise self.fail(path, f"{value!r} is not one of {allowed}") from None
        if hint in (ipaddress.IPv4Address, ipaddress.IPv6Address):
            if not isinstance(value, str):
                raise self.fail(path, f"expected an address string, got {_json_type(value)}")
            try:
                return hint(value)
            except ValueError:
                raise self.fail(path, f"{value!r} is not an {hint.__name__}") from None
        if hint is bool:
            if not isinstance(value, bool):
                raise self.fail(path, f"expected true or false, got {_json_type(value)}")
            return value
        if hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(path, f"expected an integer, got {_json_type(value)}")
            return value
        if hint is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.fail(path, f"expected a number, got {_json_type(value)}")
            try:
                return _finite(value)
            except _Invalid:  # 1e999 reads as infinity
                raise self.fail(path, "not a finite number") from None
        if hint is str:
            if not isinstance(value, str):
                raise self.fail(path, f"expected a string, got {_json_type(value)}")
            return value
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            return self.decode_dataclass(value, hint, path)
        raise TypeError(f"no decoder for {hint!r}")  # a model type this codec does not know

    def decode_dataclass(self, value: Any, cls: type[Any], path: str) -> Any:
        if type(value) is cls:  # decoded while the file was read (see _socket_as_read)
            return value
        if not isinstance(value, dict):
            raise self.fail(path, f"expected an object, got {_json_type(value)}")
        hints = typing.get_type_hints(cls, vars(model))
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise self.fail(path, f"unknown field {unknown[0]!r}")
        arguments: dict[str, Any] = {}
        for name, spec in fields.items():
            if name not in value:
                has_default = (
                    spec.default is not dataclasses.MISSING
                    or spec.default_factory is not dataclasses.MISSING
                )
                if has_default:
                    continue
                raise self.fail(path, f"missing field {name!r}")
            arguments[name] = self.decode(value[name], hints[name], f"{path}.{name}")
        return cls(**arguments)


class _Invalid(Exception):
    """The fast decoder met something it does not accept; the slow one says what and where."""


_Decode = Callable[[Any], Any]


@functools.cache
def _compile(hint: Any) -> _Decode:
    """A decoder for one declared type, built once: the snapshot of a busy host holds hundreds
    of thousands of sockets, and looking up type hints for each would dominate loading. It
    checks the same things as :class:`_Decoder` but reports nothing; on any doubt it raises
    :class:`_Invalid` and the caller reruns the checking decoder for the message."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [option for option in typing.get_args(hint) if option is not type(None)]
        nullable = len(options) < len(typing.get_args(hint))
        if set(options) == {ipaddress.IPv4Address, ipaddress.IPv6Address}:
            inner: _Decode = _decode_any_address
        elif len(options) == 1:
            inner = _compile(options[0])
        else:
            inner = _first_of([_compile(option) for option in options])
        if not nullable:
            return lambda value: inner(_not_null(value))
        return lambda value: None if value is None else inner(value)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _compile(args[0])
            return lambda value: tuple(map(item, _list(value)))
        items = [_compile(arg) for arg in args]

        def fixed(value: Any) -> tuple[Any, ...]:
            values = _list(value)
            if len(values) != len(items):
                raise _Invalid
            return tuple(decode(v) for decode, v in zip(items, values, strict=True))

        return fixed
    if origin is dict:
        _, value_hint = typing.get_args(hint)
        item = _compile(value_hint)
        return lambda value: {str(k): item(v) for k, v in _object(value).items()}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return lambda value: _enum(hint, value)
    if hint in (ipaddress.IPv4Address, ipaddress.IPv6Address):
        return lambda value: hint(_typed(value, str))
    if hint is bool:
        return lambda value: _typed(value, bool)
    if hint is int:
        return lambda value: _typed(value, int)
    if hint is float:
        return _float
    if hint is str:
        return lambda value: _typed(value, str)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _compile_dataclass(hint)
    raise TypeError(f"no decoder for {hint!r}")


def _compile_dataclass(cls: type[Any]) -> _Decode:
    hints = typing.get_type_hints(cls, vars(model))
    fields = [
        (
            f.name,
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    ]
    known = frozenset(name for name, _ in fields)
    decoders = {name: _compile(hints[name]) for name, _ in fields}

    def decode(value: Any) -> Any:
        if type(value) is cls:  # decoded while the file was read (see _socket_as_read)
            return value
        document = _object(value)
        if not known.issuperset(document):
            raise _Invalid
        arguments = {}
        for name, required in fields:
            if name in document:
                arguments[name] = decoders[name](document[name])
            elif required:
                raise _Invalid
        return cls(**arguments)

    return decode


def _first_of(decoders: list[_Decode]) -> _Decode:
    def decode(value: Any) -> Any:
        for each in decoders:
            try:
                return each(value)
            except _Invalid:
                continue
        raise _Invalid

    return decode


def _not_null(value: Any) -> Any:
    if value is None:
        raise _Invalid
    return value


def _typed(value: Any, kind: type[Any]) -> Any:
    if type(value) is not kind:  # exact: a JSON true must not pass as the integer 1
        raise _Invalid
    return value


def _float(value: Any) -> float:
    if type(value) not in (int, float):
        raise _Invalid
    return _finite(value)


def _finite(value: int | float) -> float:
    """``value`` as a float; :class:`_Invalid` where it is not a finite one (``1e999``, an
    integer of 400 digits)."""
    try:
        number = float(value)
    except OverflowError:
        raise _Invalid from None
    if not math.isfinite(number):
        raise _Invalid
    return number


def _list(value: Any) -> list[Any]:
    if type(value) is not list:
        raise _Invalid
    return value


def _object(value: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise _Invalid
    return value


def _enum(cls: type[enum.Enum], value: Any) -> enum.Enum:
    try:
        return cls(value)
    except ValueError:
        raise _Invalid from None


def _decode_any_address(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(_typed(value, str))
    except ValueError:
        raise _Invalid from None


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


class _NotJson(ValueError):
    """Text Python's json module accepts but JSON does not."""


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; json.loads would accept them, and a NaN time or queue
    # would then break the renderers (and make our own JSON output invalid).
    raise _NotJson(f"{name} is not a JSON value")


def snapshot_from_json(text: str, where: str) -> Snapshot:
    """Parse the text of a snapshot file. ``where`` names it in error messages."""
    return snapshot_from_document(_parse_json(iter((text,)), where), where)


# Where the sockets are in a snapshot file and in a series file: each is decoded as soon as it
# is read (see json_stream), and the objects around them walked to get there.
_SOCKETS_AT = (("snapshot", "sockets"), ("samples", json_stream.ITEM, "snapshot", "sockets"))
_WALKED = ((), ("snapshot",), ("samples",), ("samples", json_stream.ITEM))


def _parse_json(pieces: Iterator[str], where: str) -> Any:
    """The JSON document in ``pieces`` (its text, in order), each socket already decoded;
    anything that is not JSON is a SnapshotFormatError."""
    decoder = json.JSONDecoder(parse_constant=_refuse_constant)
    walk = {*_WALKED, *(path[:-1] for path in _SOCKETS_AT)}
    try:
        return json_stream.parse(
            pieces, decoder, walk=walk, items=dict.fromkeys(_SOCKETS_AT, _SocketsAsRead())
        )
    except json.JSONDecodeError as error:
        problem = f"not valid JSON: {error.msg} (column {error.colno})"
        failure = SnapshotFormatError(where, problem, line=error.lineno)
    except _NotJson as error:
        failure = SnapshotFormatError(where, f"not valid JSON: {error}")
    except ValueError:  # Python refuses to convert an integer of thousands of digits
        failure = SnapshotFormatError(where, "not valid JSON: a number over 4,300 digits long")
    except RecursionError:
        failure = SnapshotFormatError(where, "JSON nested too deeply")
    # The rest is read before the JSON is blamed: an input over its limit or not UTF-8 is
    # refused for that, as when it was read whole before it was parsed.
    for _ in pieces:
        pass
    raise failure


class _SocketsAsRead:
    """Turns each item of a snapshot's "sockets" into a Socket as it is read, or leaves it as it
    was where it is not a valid one (the snapshot's decoder then names the field, at its
    index). Endpoints and addresses written alike are made once and shared, as a live
    collection shares them: every connection to a listener has the same local endpoint."""

    def __init__(self) -> None:
        self.endpoints: dict[tuple[str, int | None, str | None], model.Endpoint] = {}
        self.addresses: dict[str, model.IPAddress] = {}
        self.owners: dict[tuple[tuple[int, ...], int | None], tuple[tuple[int, ...], int | None]]
        self.owners = {}

    def __call__(self, value: Any) -> Any:
        if type(value) is dict:
            for side in ("local", "remote"):
                endpoint = self._endpoint(value.get(side))
                if endpoint is not None:
                    value[side] = endpoint  # passed through by the decoder
        try:
            sock = _compile(model.Socket)(value)
        except (_Invalid, ValueError, TypeError):
            return value
        # The pids and uid of a process's sockets are alike: one tuple and one int for all.
        owner = (sock.pids, sock.uid)
        shared = self.owners.get(owner)
        if shared is None:
            if len(self.owners) < _SHARED_MAX:
                self.owners[owner] = owner
        else:
            # The socket was made a line ago and nothing else has seen it yet.
            object.__setattr__(sock, "pids", shared[0])
            object.__setattr__(sock, "uid", shared[1])
        return sock

    def _endpoint(self, raw: Any) -> model.Endpoint | None:
        """The endpoint ``raw`` stands for, where it is plainly a valid one; None leaves it to
        the decoder."""
        if type(raw) is not dict or not _ENDPOINT_KEYS.issuperset(raw) or "port" not in raw:
            return None
        text, port, name = raw.get("address"), raw["port"], raw.get("name")
        if type(text) is not str or type(port) not in (int, type(None)):
            return None
        if type(name) not in (str, type(None)):
            return None
        key = (text, port, name)
        found = self.endpoints.get(key)
        if found is not None:
            return found
        address = self.addresses.get(text)
        if address is None:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                return None
            if len(self.addresses) < _SHARED_MAX:
                self.addresses[text] = address
        found = model.new_endpoint(address, port, name)  # type: ignore[call-arg]
        if len(self.endpoints) < _SHARED_MAX:
            self.endpoints[key] = found
        return found


_ENDPOINT_KEYS = frozenset(("address", "port", "name"))
# Distinct endpoints and addresses shared, at most: a few MiB.
_SHARED_MAX = 1 << 16


def snapshots_from_json(text: str, where: str) -> list[Snapshot]:
    """The samples of a series file, oldest first, or the one snapshot of a snapshot file."""
    return _snapshots_from_document(_parse_json(iter((text,)), where), where)


def _snapshots_from_document(document: Any, where: str) -> list[Snapshot]:
    if not isinstance(document, dict) or document.get("format") != SERIES_FORMAT_NAME:
        return [snapshot_from_document(document, where)]
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SnapshotFormatError(where, '"version" must be a positive integer')
    if version > SERIES_FORMAT_VERSION:
        raise SnapshotFormatError(
            where,
            f"series version {version} is newer than this tcphealth reads "
            f"(up to {SERIES_FORMAT_VERSION}); upgrade tcphealth",
        )
    samples = document.get("samples")
    if not isinstance(samples, list) or not samples:
        raise SnapshotFormatError(where, '"samples" must be a non-empty list of snapshots')
    snapshots = [
        snapshot_from_document(sample, f"{where}: sample {number}")
        for number, sample in enumerate(samples, start=1)
    ]
    times = [snapshot.host.taken_at for snapshot in snapshots]
    if any(later <= earlier for earlier, later in itertools.pairwise(times)):
        raise SnapshotFormatError(where, "the samples are not in the order they were taken")
    return snapshots


def snapshot_from_document(document: Any, where: str) -> Snapshot:
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise SnapshotFormatError(where, f'not a tcphealth snapshot (no "format": "{FORMAT_NAME}")')
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise SnapshotFormatError(where, '"version" must be an integer')
    if version > FORMAT_VERSION:
        raise SnapshotFormatError(
            where,
            f"snapshot version {version} is newer than this tcphealth reads "
            f"(up to {FORMAT_VERSION}); upgrade tcphealth",
        )
    if version < 1:
        raise SnapshotFormatError(where, f"snapshot version {version} does not exist")
    try:
        decoded = _compile(Snapshot)(document.get("snapshot"))
    except (_Invalid, ValueError, TypeError):
        # Decode again, slowly, to name the field that is wrong.
        decoded = _Decoder(where).decode_dataclass(document.get("snapshot"), Snapshot, "snapshot")
    assert isinstance(decoded, Snapshot)
    _check_ranges(decoded, where)
    # Names and command lines are kept to their lengths, as every collector keeps them: a
    # snapshot written by hand (or by an older tcphealth) may hold any.
    capped = tuple(bounds.capped_process(process) for process in decoded.processes)
    if any(new is not old for new, old in zip(capped, decoded.processes, strict=True)):
        decoded = dataclasses.replace(decoded, processes=capped)
    return decoded


def _check_ranges(snapshot: Snapshot, where: str) -> None:
    """Refuse a snapshot holding a value no kernel gives (a port over 65535, a pid of 0, a
    negative queue, an IPv6 address in an IPv4 socket), naming the field: the rest of the
    file cannot be trusted more than that field."""
    for index, sock in enumerate(snapshot.sockets):
        problem = bounds.socket_problem(sock)
        if problem is not None:
            field_name, why = problem
            raise SnapshotFormatError(where, f"snapshot.sockets[{index}].{field_name}: {why}")
    for index, process in enumerate(snapshot.processes):
        problem = bounds.process_problem(process)
        if problem is not None:
            field_name, why = problem
            raise SnapshotFormatError(where, f"snapshot.processes[{index}].{field_name}: {why}")
    port_range = snapshot.sysctls.ip_local_port_range
    if port_range is not None and not all(0 <= port <= bounds.PORT_MAX for port in port_range):
        raise SnapshotFormatError(
            where, f"snapshot.sysctls.ip_local_port_range: {list(port_range)} are not ports"
        )
    for index, namespace in enumerate(snapshot.namespaces):
        if not 0 <= namespace.inode <= bounds.U64_MAX:
            raise SnapshotFormatError(
                where, f"snapshot.namespaces[{index}].inode: {namespace.inode} is not an inode"
            )
        if namespace.pid is not None and bounds.pid_problem(namespace.pid) is not None:
            raise SnapshotFormatError(
                where, f"snapshot.namespaces[{index}].pid: {namespace.pid} is not a pid"
            )


def read_snapshot(path: Path | str, stdin: IO[str] | None = None) -> Snapshot:
    """Read a snapshot from a file, or from standard input when ``path`` is ``-``."""
    where = where_of(path)
    chunks = iter_input(path, stdin, SNAPSHOT_LIMIT)
    return snapshot_from_document(_parse_json(_text_of(chunks, where), where), where)


def read_snapshots(path: Path | str, stdin: IO[str] | None = None) -> list[Snapshot]:
    """Read a series file (its samples, oldest first) or a snapshot file (a list of one)."""
    where = where_of(path)
    return snapshots_of_chunks(iter_input(path, stdin, SNAPSHOT_LIMIT), where)


def snapshots_of_chunks(chunks: Iterable[bytes], where: str) -> list[Snapshot]:
    """:func:`read_snapshots` of UTF-8 bytes given a chunk at a time (an input opened with
    :func:`tcphealth.reading.open_input`, read up to :data:`SNAPSHOT_LIMIT`)."""
    return _snapshots_from_document(_parse_json(_text_of(chunks, where), where), where)


def snapshots_of_text(pieces: Iterable[str], where: str) -> list[Snapshot]:
    """:func:`read_snapshots` of text given a piece at a time (already decoded)."""
    return _snapshots_from_document(_parse_json(iter(pieces), where), where)


def _text_of(chunks: Iterable[bytes], where: str) -> Iterator[str]:
    """The text of the UTF-8 ``chunks`` a piece at a time, read bounded (see
    :mod:`tcphealth.reading`); never whole, so that it is not held beside what is made of
    it."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    done = 0  # bytes given to the decoder so far
    try:
        for chunk in chunks:
            held = len(decoder.getstate()[0])  # the start of a character cut by the chunk
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as error:
                raise _not_utf8(where, done - held + error.start) from None
            done += len(chunk)
            if text:
                yield text
        held = len(decoder.getstate()[0])
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as error:
            raise _not_utf8(where, done - held + error.start) from None
    except InputError as error:
        if isinstance(error, SnapshotFormatError):
            raise
        raise SnapshotFormatError(error.where, error.problem) from None


def _not_utf8(where: str, at: int) -> SnapshotFormatError:
    return SnapshotFormatError(where, f"not UTF-8 text (byte {at})")
