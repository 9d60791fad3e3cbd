"""Listings a paste cut short: ``...``, ``[very long list]`` or ``<snip>`` where rows were left
out, or a ``| head`` (``tail``) that printed exactly the lines it lets through.

The rows beside such a mark are a sample of more of their kind. Nothing said about them may
rest on their number being small: a rule that counts them calls the count a floor, and no
process among them is "nothing wrong" on the strength of the rows shown. This rule says where
the listing is partial and about whom, so the report carries that with the processes; its
finding is an INFO, because a cut listing is not itself a problem.
"""

from __future__ import annotations

from tcphealth.diagnose.config import Thresholds
from tcphealth.diagnose.index import SnapshotIndex
from tcphealth.diagnose.rule import Code, Rule
from tcphealth.diagnose.shared import platform_steps
from tcphealth.diagnose.wording import process_subject, who
from tcphealth.model import Blame, Evidence, Finding, Severity, Subject, SubjectKind

LISTING_ELIDED = "listing-elided"


def check(index: SnapshotIndex, thresholds: Thresholds) -> list[Finding]:
    findings: list[Finding] = []
    for elision in index.snapshot.elisions:
        states = ", ".join(state.value for state in elision.states)
        if elision.pids:
            subject = process_subject(index, elision.pids)
            holder = f" of {who(index, elision.pids)}"
        else:
            subject = Subject(kind=SubjectKind.HOST)
            holder = ""
        state = elision.states[0] if len(elision.states) == 1 else None
        # The rows shown of that kind: the floor the mark stands above.
        shown = sum(
            1
            for kind in elision.states
            for sock in index.sockets(kind)
            if (set(sock.pids) & set(elision.pids) if elision.pids else not sock.pids)
        )
        findings.append(
            Finding(
                code=LISTING_ELIDED,
                severity=Severity.INFO,
                state=state,
                blame=Blame.NONE,
                subject=subject,
                count=shown,
                summary=(
                    f"The paste leaves rows out at {elision.mark!r}, among {states} "
                    f"connections{holder}: those shown are a sample, so what is said of them "
                    "counts only the rows shown, and their number is a floor."
                ),
                evidence=(
                    Evidence("elided", elision.mark, "the paste's mark for rows left out"),
                    Evidence("states_beside", states, "the states of the rows beside it"),
                ),
                next_steps=platform_steps(
                    index.snapshot.host.platform,
                    (
                        "Paste the whole listing, or its count per state and process "
                        "(ss -tanp | awk '{print $1, $NF}' | sort | uniq -c | sort -rn | head).",
                    ),
                    bsd=(
                        "Paste the whole listing, or its count per state and process "
                        "(lsof -nP -iTCP | awk 'NR > 1 {print $NF, $1, $2}' | sort | uniq -c "
                        "| sort -rn | head).",
                    ),
                    windows=(
                        "Paste the whole listing, or its count per state and process "
                        "(Get-NetTCPConnection | Group-Object State, OwningProcess | "
                        "Sort-Object Count -Descending | Select-Object -First 10 Count, Name).",
                    ),
                ),
                unchecked=(
                    "the rows left out: how many, and whether they are like the rows beside "
                    "the mark",
                ),
            )
        )
    return findings


RULE = Rule(
    name="partial",
    summary="a pasted listing cut short by an elision mark",
    codes=(
        Code(
            LISTING_ELIDED,
            "a pasted listing leaves rows out ('...', '[very long list]'): counts beside the "
            "mark are floors",
            (Severity.INFO,),
        ),
    ),
    check=check,
)
