"""What a rule is: a declared record of its name, the codes it can emit, its check over one
snapshot and its optional step over a series.

Finding codes are the product's stable interface (users grep them, CI keys on them), so each is
declared once, literally, with what it means and the severities it can carry; the catalogue
(``tcphealth explain --codes``) and the README's table are made from these declarations, and a
test runs every fixture through the rules to check that each finding's code was declared by the
rule that made it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.timeline import Age, ConnectionKey, HeldSince, connection_key
from tcphealth.model import Finding, Severity, Snapshot, Socket
from tcphealth.series_facts import SeriesFacts

if TYPE_CHECKING:  # numpy is loaded only where a table is read
    from tcphealth.columnar import SocketTable


@dataclass(frozen=True)
class Code:
    """One finding code: ``name`` as it appears in every output, ``meaning`` one line in our
    words, ``severities`` every severity a finding with it can have (lowest first)."""

    name: str
    meaning: str
    severities: tuple[Severity, ...]
    # Kernel counters (as in Snapshot.counters) whose rise during a series a finding with this
    # code accounts for: the series adds the rise to it as evidence instead of a finding of
    # its own. Declared here so that the series needs no other module's code names.
    explains_counters: tuple[str, ...] = ()
    # Kernel counters whose count since boot a finding with this code reports, with no way to
    # say when it grew. Over a series that sees one of them rise, the rising finding says
    # more (when, how fast), and a finding with this code is left out.
    since_boot_of: tuple[str, ...] = ()
    # Made only by the rule's step over a series (--samples, watch, a series file), never from
    # one snapshot.
    from_series: bool = False
    # A finding about a few sockets of a state no timer ends, made because their age is unknown
    # or has lasted: the verdict counts its sockets as those "whose age decides" rather than
    # calling the host fine (or in trouble).
    age_decides: bool = False


@dataclass(frozen=True)
class Window:
    """A series as a step sees it: the samples (oldest first), each current socket's age, the
    facts worked out over them, and the declared codes by name."""

    series: Sequence[Snapshot]
    ages: Mapping[ConnectionKey, Age]
    facts: SeriesFacts
    codes: Mapping[str, Code]
    # Where ``watch`` keeps unbroken stretches from look to look (None: the window is all)
    held: HeldSince | None = None

    @property
    def latest(self) -> Snapshot:
        return self.series[-1]

    @property
    def samples(self) -> int:
        return len(self.series)

    @property
    def seconds(self) -> float:
        return self.facts.window_seconds

    def stayed(self, sock: Socket) -> bool:
        """Seen in its state in every sample of the window."""
        return self.stayed_key(connection_key(sock))

    def stayed_key(self, key: ConnectionKey) -> bool:
        age = self.ages.get(key)
        return age is not None and age.samples >= self.samples

    def span_text(self) -> str:
        return f"{self.seconds:.1f} s across {self.samples} samples"


Check = Callable[[SnapshotIndex, Thresholds], list[Finding]]
# A step takes the findings so far (the latest sample's, as corrected by the steps before it)
# and returns them corrected and extended by what the series shows.
Step = Callable[[Window, list[Finding], Thresholds], list[Finding]]
TableCheck = Callable[[SnapshotIndex, Thresholds, "SocketTable"], list[Finding]]


@dataclass(frozen=True)
class Rule:
    """One rule: ``check`` looks at a single snapshot (None for a rule that only time can
    show), ``step`` at a series of two or more samples."""

    name: str
    summary: str  # what the rule looks at, one line
    codes: tuple[Code, ...]
    check: Check | None
    step: Step | None = None
    # The same check counting over the snapshot's sockets as columns (SocketTable), for a
    # rule that reads a state most sockets are in: the lean path of `tcphealth serve`
    # (diagnose(..., table=...)); tests/test_lean_rules.py holds each to its ``check``.
    check_table: TableCheck | None = None
