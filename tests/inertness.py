"""Byte-level checks that output is inert: what the hostile-name tests assert of every format.

tcphealth shows a control or invisible character as a Python-style escape (``\\x1b``, ``\\n``,
``\\x9b``, ``\\u202e``), so the only control byte it ever writes itself is the newline ending a
line -- and, in colour, the SGR sequences (``ESC [ ... m``) of its own styles.
"""

from __future__ import annotations

import re

# ESC [ params m: the only escape sequence rich writes for the styles tcphealth uses.
SGR = re.compile(rb"\x1b\[[0-9;]*m")
# C0 controls but the newline, and DEL.
C0_OR_DEL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]")
# C1 controls as UTF-8 encodes them (U+0080..U+009F), and bidi overrides/isolates.
C1_OR_BIDI = re.compile("[\u0080-\u009f\u202a-\u202e\u2066-\u2069]")


def control_bytes(output: bytes, *, colour: bool = False) -> list[bytes]:
    """Every control byte (or C1 / bidi character) in ``output`` that tcphealth did not write
    for its own colours; empty when the output is inert."""
    if colour:
        output = SGR.sub(b"", output)
    found = [match.group() for match in C0_OR_DEL.finditer(output)]
    text = output.decode("utf-8", errors="strict")  # also: the output is valid UTF-8
    found.extend(match.group().encode() for match in C1_OR_BIDI.finditer(text))
    return found
