"""Error lines in a paste: a program saying, in its own log, that a call failed for want of a
resource the TCP findings are about.

Reporters paste the error that sent them looking next to the listing: ``accept4: too many open
files``, ``[err] evsig_init: socketpair: Too many open files``, ``Error: accept EMFILE``,
``dial tcp 10.0.0.5:443: connect: cannot assign requested address``. Unlike the kernel's
messages (kernel_log.py) these come in every program's own format -- a Go error chain, a Java
exception, a Python ``OSError: [Errno 24]``, a sentence quoting the error -- so the error is
matched anywhere in the line, by the words libc's strerror() gives it on Linux, glibc and
macOS, or by its errno name:

* EMFILE, "Too many open files": the process has as many descriptors open as RLIMIT_NOFILE
  allows, so accept(), socket(), connect() of a new socket and open() fail for it. Not ENFILE,
  "Too many open files in system" (the kernel's file table, fs.file-max: every process at
  once), which is a different limit and is not read here.
* EADDRNOTAVAIL, "Cannot assign requested address" (macOS: "Can't assign requested
  address"): connect() found no free local port for the destination (or bind() no address).
  Some programs say which in their own words: HAProxy logs "Connect() failed for backend X:
  no free ports" for that errno, which names the ports (``ports_named``).
* EADDRINUSE, "Address already in use" (Winsock: WSAEADDRINUSE, error 10048): bind() of an
  address and port the program chose found them taken.
* ETIMEDOUT from connect() ("Connection timed out", "connect timed out"): the SYN and every
  retry of it went unanswered. Only where the line says it was connecting (``connect``,
  ``dial``, ``ConnectException``, ``while connecting``): the same error from read() or write()
  is an established connection's data going unacknowledged, another matter.

A line that searches for the words is a command, not the error: ``grep "Too many open files"
app.log`` (with or without a prompt before it) is passed over. The caller looks at a line only
after prompts, command lines, rows and counts have had their turn. A line longer than
``_MAX_LINE`` is not looked at.
"""

from __future__ import annotations

import re

from tcphealth.model import ErrorKind

_MAX_LINE = 1000

_DESCRIPTORS = re.compile(r"too many open files(?! in system)|\bEMFILE\b", re.IGNORECASE)
# ENFILE is not EMFILE: the system's file table is full, not the process's limit reached.
_SYSTEM_FILES = re.compile(r"too many open files in system|\bENFILE\b", re.IGNORECASE)
_LOCAL_PORTS = re.compile(
    r"(?:cannot|can't|can not) assign requested address|\bEADDRNOTAVAIL\b", re.IGNORECASE
)
# A program's own words for EADDRNOTAVAIL from connect(): no local port was left.
_NO_FREE_PORTS = re.compile(
    r"\bno (?:more )?(?:free|available) (?:local |source |ephemeral )?ports?\b", re.IGNORECASE
)
# A syslog tag naming the process that logged the line: ``haproxy[3569]:`` (after the date
# and host name syslog puts before it, or at the start where a reporter kept only the message).
_SYSLOG_TAG = re.compile(r"(?:^|\s)(?P<name>[A-Za-z][\w./-]{0,63})\[(?P<pid>\d{1,9})\]:\s")
_TIMED_OUT = re.compile(r"\bETIMEDOUT\b|timed out|\(110:", re.IGNORECASE)
_CONNECTING = re.compile(
    r"\bconnect(?:\(\))?(?=\W|$)|\bconnecting\b|ConnectException|\bdial\b", re.IGNORECASE
)
_IN_USE = re.compile(r"address already in use|\b(?:WSA)?EADDRINUSE\b", re.IGNORECASE)
# A search for the words: a tool that takes a pattern, then the words in its arguments.
_SEARCH = re.compile(
    r"\b(?:[ezf]?grep|rg|ag|ack|awk|sed|findstr|select-string)\b[^|]{0,200}"
    r"(?:open files|emfile|assign requested|eaddrnotavail|already in use|eaddrinuse"
    r"|free ports?|timed out|etimedout)",
    re.IGNORECASE,
)
# Words one of the errors holds (lower-cased): a line without any is not looked at further.
_HINTS = (
    "open files",
    "emfile",
    "assign requested",
    "eaddrnotavail",
    "already in use",
    "eaddrinuse",
    "no free",
    "no more free",
    "no available",
    "no more available",
    "timed out",
    "etimedout",
)


def match_error_line(line: str) -> ErrorKind | None:
    """The error a pasted line reports, or None."""
    if len(line) > _MAX_LINE:
        return None
    lowered = line.lower()
    if not any(hint in lowered for hint in _HINTS) or _SEARCH.search(line):
        return None
    if _LOCAL_PORTS.search(line) or _NO_FREE_PORTS.search(line):
        return ErrorKind.LOCAL_PORTS
    if _DESCRIPTORS.search(line) and not _SYSTEM_FILES.search(line):
        return ErrorKind.DESCRIPTORS
    if _IN_USE.search(line):
        return ErrorKind.ADDRESS_IN_USE
    if _TIMED_OUT.search(line) and _CONNECTING.search(line):
        return ErrorKind.CONNECT_TIMEOUT
    return None


def names_ports(line: str) -> bool:
    """Whether an EADDRNOTAVAIL line says in words that the local ports ran out."""
    return _NO_FREE_PORTS.search(line) is not None


def logged_by(line: str) -> tuple[str, int] | None:
    """The process a log line names by its syslog tag (``haproxy[3569]:``): name and pid."""
    tag = _SYSLOG_TAG.search(line[:200])
    if tag is None:
        return None
    return tag.group("name"), int(tag.group("pid"))
