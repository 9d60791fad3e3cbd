"""One JSON document read from pieces of text as they come, with chosen arrays handed over item
by item, so that a snapshot of 300,000 sockets never exists as a tree of Python dicts beside
the sockets made from it.

The structure around the chosen arrays (a few objects deep) is walked here; every other value
is decoded by the standard library's ``JSONDecoder.raw_decode``, so what is valid JSON, and the
wording of each error, stay the standard library's. Positions in errors count over the whole
document, as ``json.loads`` would give them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

# A node's place in the document: object keys, and "*" for any item of an array.
Path = tuple[str, ...]
ITEM = "*"

_WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's, and no more
_CHUNK = 1 << 20


def parse(
    pieces: Iterator[str],
    decoder: json.JSONDecoder,
    *,
    walk: Collection[Path],
    items: Mapping[Path, Callable[[Any], Any]],
) -> Any:
    """The document in ``pieces``. Objects and arrays at a path in ``walk`` are walked here;
    each item of an array at a path in ``items`` is replaced by what its function returns,
    as soon as the item is read. Raises ``json.JSONDecodeError`` as ``json.loads`` would."""
    reader = _Reader(pieces, decoder)
    reader.fill(1)
    if reader.text.startswith("\ufeff"):
        raise reader.error("Unexpected UTF-8 BOM (decode using utf-8-sig)", 0)
    value = _node(reader, (), walk, items)
    if reader.peek():
        raise reader.error("Extra data", reader.at)
    return value


def _node(
    reader: _Reader, path: Path, walk: Collection[Path], items: Mapping[Path, Callable[[Any], Any]]
) -> Any:
    first = reader.peek()
    if first == "{" and path in walk:
        return _object(reader, path, walk, items)
    if first == "[" and (path in walk or path in items):
        return _array(reader, path, walk, items)
    return reader.value()


def _object(
    reader: _Reader, path: Path, walk: Collection[Path], items: Mapping[Path, Callable[[Any], Any]]
) -> dict[str, Any]:
    reader.at += 1
    result: dict[str, Any] = {}
    following = reader.peek()
    if following == "}":
        reader.at += 1
        return result
    while True:
        if following != '"':
            raise reader.error("Expecting property name enclosed in double quotes", reader.at)
        key = reader.value()
        if reader.peek() != ":":
            raise reader.error("Expecting ':' delimiter", reader.at)
        reader.at += 1
        result[key] = _node(reader, (*path, key), walk, items)
        following = reader.peek()
        if following == "}":
            reader.at += 1
            return result
        if following != ",":
            raise reader.error("Expecting ',' delimiter", reader.at)
        reader.at += 1
        following = reader.peek()


def _array(
    reader: _Reader, path: Path, walk: Collection[Path], items: Mapping[Path, Callable[[Any], Any]]
) -> list[Any]:
    reader.at += 1
    result: list[Any] = []
    each = items.get(path)
    inner = (*path, ITEM)
    if reader.peek() == "]":
        reader.at += 1
        return result
    while True:
        value = _node(reader, inner, walk, items)
        result.append(value if each is None else each(value))
        following = reader.peek()
        if following == "]":
            reader.at += 1
            return result
        if following != ",":
            raise reader.error("Expecting ',' delimiter", reader.at)
        reader.at += 1


class _Reader:
    """A window on the document: ``text`` from ``at`` on is what is not read yet. What was
    read is dropped as more text comes; ``lines`` and ``column`` remember where it ended."""

    def __init__(self, pieces: Iterator[str], decoder: json.JSONDecoder) -> None:
        self.pieces = pieces
        self.decoder = decoder
        self.text = ""
        self.at = 0
        self.ended = False
        self.lines = 0  # line breaks in the text already dropped
        self.column = 0  # characters after the last of them

    def fill(self, wanted: int) -> None:
        """Drop what was read, then add pieces until ``wanted`` characters are unread or the
        document ends."""
        text, at = self.text, self.at
        if at:
            breaks = text.count("\n", 0, at)
            if breaks:
                self.lines += breaks
                self.column = at - text.rfind("\n", 0, at) - 1
            else:
                self.column += at
            text = text[at:]
            self.at = 0
        parts = [text] if text else []  # a first piece taken whole is not copied
        size = len(text)
        while size < wanted and not self.ended:
            piece = next(self.pieces, None)
            if piece is None:
                self.ended = True
                break
            parts.append(piece)
            size += len(piece)
        self.text = "".join(parts) if len(parts) > 1 else (parts[0] if parts else "")

    def peek(self) -> str:
        """The next character that is not blank ("" at the end), without reading it."""
        while True:
            match = _WHITESPACE.match(self.text, self.at)
            assert match is not None  # the pattern matches the empty string
            self.at = match.end()
            if self.at < len(self.text):
                return self.text[self.at]
            if self.ended:
                return ""
            self.fill(_CHUNK)

    def value(self) -> Any:
        """Decode the value that starts here. A value cut off by the end of the window is
        decoded again once more text has come (twice the window, so a large value costs a
        few passes, not one per piece); one that reaches the window's end exactly may go on
        (a number), so it is decoded again too."""
        while True:
            try:
                value, end = self.decoder.raw_decode(self.text, self.at)
            except json.JSONDecodeError as error:
                if self.ended:
                    raise self.error(error.msg, error.pos) from None
                self.fill(2 * (len(self.text) - self.at) + _CHUNK)
                continue
            if end == len(self.text) and not self.ended:
                self.fill(len(self.text) - self.at + _CHUNK)
                continue
            self.at = end
            return value

    def error(self, message: str, at: int) -> json.JSONDecodeError:
        """``json.JSONDecodeError`` for position ``at`` of the window, placed in the whole
        document."""
        breaks = self.text.count("\n", 0, at)
        column = at - self.text.rfind("\n", 0, at) if breaks else self.column + at + 1
        error = json.JSONDecodeError(message, "", 0)
        error.lineno = self.lines + breaks + 1
        error.colno = column
        return error
