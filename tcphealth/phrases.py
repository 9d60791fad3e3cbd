"""Words every layer writes the same way. Neutral: it imports nothing of tcphealth, so the
diagnoses (which write summaries) and the renderers (which write lines) share one spelling
without either importing the other."""

from __future__ import annotations


def plural(count: int, word: str, plural_word: str | None = None) -> str:
    """``1 socket``, ``2 sockets``, ``1,024 sockets``; ``plural_word`` for an irregular one
    (``2 other processes``)."""
    chosen = word if count == 1 else (plural_word or word + "s")
    return f"{count:,} {chosen}"
