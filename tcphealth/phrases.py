"""Words every layer writes the same way. Neutral: it imports nothing of tcphealth, so the
diagnoses (which write summaries) and the renderers (which write lines) share one spelling
without either importing the other."""

from __future__ import annotations


def plural(count: int, word: str, plural_word: str | None = None) -> str:
    """``1 socket``, ``2 sockets``, ``1,024 sockets``; ``plural_word`` for an irregular one
    (``2 other processes``)."""
    chosen = word if count == 1 else (plural_word or word + "s")
    return f"{count:,} {chosen}"


def unseen_owner_note(count: int) -> str:
    """The note for sockets with an inode that no process visible here holds. The collector
    writes it for the whole host; a filtered report writes it again for the sockets it shows."""
    return (
        f"{count} socket(s) are held by no process visible here (a process in another "
        "PID namespace, or a socket opened or a process ended while the scan ran)"
    )
