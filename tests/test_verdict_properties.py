"""One verdict however you look (issue #21), as properties over generated snapshots.

For any snapshot and any filter: every finding shown is one of the unfiltered findings (same
code, severity, blame, subject, evidence); no process a finding is about is listed as having
nothing wrong; a filter that matches nothing makes ``check`` exit 3; and no finding's evidence
states a fact whose source field is unknown in every socket.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcphealth.cli import main
from tcphealth.diagnose import diagnose
from tcphealth.diagnose.config import Thresholds
from tcphealth.filters import SocketFilter, apply_filter
from tcphealth.model import Family, Finding, Snapshot, TcpState
from tcphealth.pipeline import analyse
from tcphealth.sources.snapshot_file import write_snapshot
from tests.snapshot_strategies import out_of_kernel_range, snapshots

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

# Low enough that small generated snapshots make findings of every rule.
EAGER = Thresholds(
    close_wait_warning=1,
    syn_recv_warning=1,
    syn_sent_warning=1,
    syn_sent_min_retransmits=0,
    closing_warning=1,
    fin_wait2_held_warning=1,
    fin_wait2_orphan_warning=1,
    established_warning=1,
    established_recv_queue_bytes=1,
    established_min_retransmits=1,
)

networks = st.sampled_from(
    [ipaddress.ip_network(text) for text in ("127.0.0.0/8", "10.0.0.0/8", "::1/128", "::/0")]
)
filters = st.builds(
    SocketFilter,
    states=st.frozensets(st.sampled_from(list(TcpState)), max_size=2),
    ports=st.frozensets(st.sampled_from([22, 80, 443, 8080, 40000]), max_size=2),
    pids=st.frozensets(st.sampled_from([1, 2, 812, 813, 999999]), max_size=2),
    processes=st.lists(st.sampled_from(["java", "j*", "*", "javaa"]), max_size=1).map(tuple),
    local=st.lists(networks, max_size=1).map(tuple),
    remote=st.lists(networks, max_size=1).map(tuple),
    families=st.frozensets(st.sampled_from(list(Family)), max_size=1),
).filter(lambda flt: flt.active)


def _unmarked(finding: Finding) -> Finding:
    return dataclasses.replace(finding, outside_filter=())


@SETTINGS
@given(snapshot=snapshots(max_sockets=20), flt=filters)
def test_a_finding_shown_under_a_filter_is_the_unfiltered_finding(
    snapshot: Snapshot, flt: SocketFilter
) -> None:
    whole = analyse(snapshot, thresholds=EAGER).findings
    for finding in analyse(snapshot, flt, EAGER).findings:
        assert _unmarked(finding) in whole


@SETTINGS
@given(snapshot=snapshots(max_sockets=20), flt=filters)
def test_no_process_a_finding_is_about_has_nothing_wrong(
    snapshot: Snapshot, flt: SocketFilter
) -> None:
    for report in (analyse(snapshot, thresholds=EAGER), analyse(snapshot, flt, EAGER)):
        named = {pid for finding in report.findings for pid in finding.subject.pids}
        quiet = {owner.pid for owner in report.processes if not owner.findings}
        assert not named & quiet


@SETTINGS
@given(snapshot=snapshots(max_sockets=20), flt=filters)
def test_the_filtered_report_exits_as_its_findings_and_an_empty_one_is_marked(
    snapshot: Snapshot, flt: SocketFilter
) -> None:
    report = analyse(snapshot, flt, EAGER)
    narrowed = apply_filter(snapshot, flt)
    # A process --pid/--process names counts as matched even where it holds no selected socket.
    owners = apply_filter(snapshot, SocketFilter(pids=flt.pids, processes=flt.processes))
    matched_owner = flt.selects_owners and bool(owners.sockets or owners.processes)
    assert (report.empty_selection is None) == bool(narrowed.sockets or matched_owner)
    assert report.worst_severity == max(
        (finding.severity for finding in report.findings), default=report.worst_severity
    )


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(snapshot=snapshots(max_sockets=6), flt=filters)
def test_check_exits_3_on_an_empty_selection_unless_told_it_is_fine(
    tmp_path_factory: pytest.TempPathFactory, snapshot: Snapshot, flt: SocketFilter
) -> None:
    report = analyse(snapshot, flt)
    path = tmp_path_factory.mktemp("snap") / "s.json"
    write_snapshot(snapshot, path)
    args = ["check", "--from", str(path), *_options(flt), "--nagios"]
    result = CliRunner().invoke(main, args)
    if out_of_kernel_range(snapshot):  # the file is refused, naming the field (issue 26)
        assert result.exit_code == 3, result.output
        assert result.stdout.startswith("TCPHEALTH UNKNOWN - ")
        return
    if report.empty_selection is not None:
        assert result.exit_code == 3, result.output
        assert result.stdout.startswith("TCPHEALTH UNKNOWN - no socket matched -")
        allowed = CliRunner().invoke(main, [*args, "--allow-empty"])
        assert allowed.exit_code == report.exit_code()
    else:
        assert result.exit_code == report.exit_code(), result.output


def _options(flt: SocketFilter) -> list[str]:
    options: list[str] = []
    for state in flt.states:
        options += ["--state", state.value]
    for port in flt.ports:
        options += ["--port", str(port)]
    for pid in flt.pids:
        options += ["--pid", str(pid)]
    for glob in flt.processes:
        options += ["--process", glob]
    for network in flt.local:
        options += ["--local", str(network)]
    for network in flt.remote:
        options += ["--remote", str(network)]
    for family in flt.families:
        options.append("-4" if family is Family.IPV4 else "-6")
    return options


# Evidence that states a fact from one socket field; with the field unknown in every socket,
# the fact must not be stated (as present, absent, or a number).
EVIDENCE_FROM_FIELD = {
    "inode": ("with_inode",),
    "tcp_info": ("oldest_at_least_s", "longest_idle_s"),
    "listen_backlog": ("listen_backlog",),
}


@SETTINGS
@given(snapshot=snapshots(max_sockets=20), field=st.sampled_from(sorted(EVIDENCE_FROM_FIELD)))
def test_no_evidence_names_a_fact_its_source_left_unknown(snapshot: Snapshot, field: str) -> None:
    unknown: dict[str, Any] = {field: None}
    blanked = dataclasses.replace(
        snapshot,
        sockets=tuple(dataclasses.replace(sock, **unknown) for sock in snapshot.sockets),
    )
    for finding in diagnose(blanked, EAGER):
        for item in finding.evidence:
            assert item.name not in EVIDENCE_FROM_FIELD[field] or item.value is None, finding
            if field == "listen_backlog":
                assert "queue not full" not in (item.detail or ""), finding
