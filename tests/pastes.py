"""What the paste tests share: the real pastes of fixtures/realworld/threads, found by the start
of their file name, and the snapshot a paste's last capture gives."""

from __future__ import annotations

from pathlib import Path

from tcphealth.model import Snapshot
from tcphealth.sources.text.paste import read_paste

THREADS = Path(__file__).resolve().parent.parent / "fixtures" / "realworld" / "threads"


def corpus(prefix: str) -> str:
    """The one real paste whose file name starts with ``prefix``."""
    (path,) = THREADS.glob(f"{prefix}*.txt")
    return path.read_text(encoding="utf-8")


def last(text: str) -> Snapshot:
    """The snapshot of a paste's last capture (the one a diagnosis is of)."""
    return read_paste(text.splitlines(), "paste")[-1]
