"""The Prometheus exposition (tcphealth.render.prometheus), ``tcphealth metrics`` and the rules
shipped in deploy/prometheus: names, bounded labels, hostile names, the textfile, promtool.

promtool comes with the Debian ``prometheus`` package, which .ci/run installs; on a machine
without it the promtool tests are skipped, except under CI, where they fail.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import stat
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from tcphealth.cli import main
from tcphealth.diagnose import config as diagnose_config
from tcphealth.exporter import report_families
from tcphealth.model import Endpoint, Family, Severity, Snapshot, Socket, Sysctls, TcpState
from tcphealth.pipeline import analyse
from tcphealth.render.prometheus import (
    KernelFacts,
    exposition,
    families,
    label_text,
    self_families,
)
from tcphealth.report import build_report
from tests.scenario_helpers import finding, proc, snap, sock

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
RULES = ROOT / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool (Debian package prometheus) is not installed; .ci/run installs it",
)


@pytest.fixture(autouse=True)
def _no_config_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagnose_config, "SEARCH_PATHS", (), raising=False)


Sample = tuple[str, tuple[tuple[str, str], ...]]


def samples(text: str) -> dict[Sample, float]:
    """Every sample of an exposition by (name, sorted labels); a repeated one fails."""
    seen: dict[Sample, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in seen, f"duplicate series {key}"
            seen[key] = sample.value
    return seen


def values(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (each, labels), value in samples(text).items() if each == name}


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, "promtool is missing: apt-get install prometheus"
    return subprocess.run(
        [PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def run_metrics(*args: str) -> str:
    result = CliRunner().invoke(main, ["metrics", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout


# --- what a fixture exports ------------------------------------------------------------------


def test_listener_fixture_exports_queue_backlog_and_findings() -> None:
    text = run_metrics("--from", str(FIXTURES / "listener-not-accepting.json"))
    queue = values(text, "tcphealth_listener_accept_queue")
    assert queue[(("endpoint", "0.0.0.0:8000"), ("process", "gunicorn"))] == 129
    backlog = values(text, "tcphealth_listener_backlog")
    assert backlog[(("endpoint", "0.0.0.0:8000"), ("process", "gunicorn"))] == 128
    found = values(text, "tcphealth_finding_sockets")
    key = (
        ("blame", "local-application"),
        ("code", "listen-queue-full"),
        ("endpoint", "0.0.0.0:8000"),
        ("process", "gunicorn"),
        ("severity", "critical"),
        ("subject", "listener"),
    )
    assert found[key] == 129
    assert values(text, "tcphealth_findings")[(("severity", "critical"),)] == 2
    states = values(text, "tcphealth_sockets")
    assert states[(("state", "SYN_RECV"),)] == 40 and states[(("state", "TIME_WAIT"),)] == 0
    # A file's metrics carry no collection time: it would measure only the reading.
    assert "tcphealth_collect_duration_seconds" not in text
    assert values(text, "tcphealth_collect_success") == {(): 1}
    assert values(text, "tcphealth_build_info") == {(("version", "0.1.0"),): 1}


def test_time_wait_share_of_the_port_range() -> None:
    import json

    fixture = FIXTURES / "time-wait-port-exhaustion.json"
    low, high = json.loads(fixture.read_text())["snapshot"]["sysctls"]["ip_local_port_range"]
    text = run_metrics("--from", str(fixture))
    ratios = values(text, "tcphealth_time_wait_destination_port_ratio")
    counts = values(text, "tcphealth_time_wait_destination_sockets")
    assert ratios and set(ratios) == set(counts)
    for labels, ratio in ratios.items():
        # The snapshot states its range: the ratio is the count over the range's size.
        assert ratio == pytest.approx(counts[labels] / (high - low + 1))
    assert ratios == {
        (("destination", "198.51.100.20:443"), ("local_address", "10.0.0.7")): 490 / 512
    }


def test_kernel_counters_only_when_the_snapshot_has_them() -> None:
    report_snapshot = snap([sock("LISTEN", "0.0.0.0:80", "0.0.0.0:0", 1)], [proc(1, "nginx")])
    report = analyse(report_snapshot)
    none = exposition(families(report, KernelFacts({}, Sysctls())))
    assert "tcphealth_kernel_" not in none.decode()
    some = exposition(
        families(report, KernelFacts({"TcpExt.TCPTimeWaitOverflow": 7}, Sysctls()))
    ).decode()
    assert values(some, "tcphealth_kernel_time_wait_overflows_total") == {(): 7}
    assert "tcphealth_kernel_backlog_drops_total" not in some


def test_series_file_exports_its_time_based_finding_and_ages() -> None:
    text = run_metrics("--from", str(FIXTURES / "series" / "close-wait-slow-close.json"))
    codes = {dict(labels)["code"] for labels in values(text, "tcphealth_finding_sockets")}
    assert "close-wait-slow-close" in codes  # only a series can tell it
    buckets = values(text, "tcphealth_socket_state_age_seconds_bucket")
    assert buckets, "a series gives ages"
    infinite = {
        dict(labels)["state"]: v for labels, v in buckets.items() if ("le", "+Inf") in labels
    }
    gcount = values(text, "tcphealth_socket_state_age_seconds_gcount")
    assert {dict(labels)["state"]: v for labels, v in gcount.items()} == infinite


def test_ages_use_the_kernel_floor_and_fill_the_buckets() -> None:
    from tcphealth.model import TcpInfo

    sockets = [
        sock(
            "CLOSE_WAIT",
            "10.0.0.5:40000",
            "10.0.0.9:5432",
            7,
            tcp_info=TcpInfo(last_ack_recv_ms=500),
        ),
        sock(
            "CLOSE_WAIT",
            "10.0.0.5:40001",
            "10.0.0.9:5432",
            7,
            tcp_info=TcpInfo(last_ack_recv_ms=90_000),
        ),
        sock("CLOSE_WAIT", "10.0.0.5:40002", "10.0.0.9:5432", 7),  # age unknown: not counted
        # SYN_SENT is not entered on an ACK: its last ACK says nothing of its age.
        sock(
            "SYN_SENT", "10.0.0.5:40003", "10.0.0.9:5432", 7, tcp_info=TcpInfo(last_ack_recv_ms=1)
        ),
    ]
    text = exposition(
        families(analyse(snap(sockets, [proc(7, "app")])), KernelFacts({}, Sysctls()))
    ).decode()
    buckets = {
        dict(labels)["le"]: v
        for labels, v in values(text, "tcphealth_socket_state_age_seconds_bucket").items()
        if ("state", "CLOSE_WAIT") in labels
    }
    assert buckets["1.0"] == 1 and buckets["60.0"] == 1 and buckets["300.0"] == 2
    assert buckets["+Inf"] == 2
    assert values(text, "tcphealth_socket_state_age_seconds_gsum") == {
        (("state", "CLOSE_WAIT"),): 90.5
    }
    states = {
        dict(labels)["state"]
        for labels in values(text, "tcphealth_socket_state_age_seconds_bucket")
    }
    assert states == {"CLOSE_WAIT"}


# --- bounded cardinality ----------------------------------------------------------------------


def crowded_snapshot() -> Snapshot:  # 60 process names, 60 listeners, 60 TIME_WAIT destinations
    sockets = []
    processes = []
    for n in range(60):
        pid = 1000 + n
        processes.append(proc(pid, f"svc{n:02d}", open_fds=10 + n, fd_soft_limit=1024))
        port = 2000 + n
        sockets.append(
            sock("LISTEN", f"0.0.0.0:{port}", "0.0.0.0:0", pid, listen_backlog=128, recv_queue=n)
        )
        for k in range(n + 1):  # svcNN holds NN+1 ESTABLISHED: a strict ranking
            sockets.append(sock("ESTABLISHED", f"10.0.0.5:{port}", f"10.1.0.{n}:{40000 + k}", pid))
        for k in range(n + 1):
            sockets.append(sock("TIME_WAIT", f"10.0.0.5:{33000 + k}", f"10.2.0.{n}:443"))
    return snap(sockets, processes)


def test_every_labelled_metric_keeps_top_n_plus_other_and_sums_are_kept() -> None:
    snapshot = crowded_snapshot()
    report = analyse(snapshot)
    text = exposition(families(report, KernelFacts({}, snapshot.sysctls), top=5)).decode()

    per_process = values(text, "tcphealth_process_sockets")
    names = {dict(labels)["process"] for labels in per_process}
    assert names == {"svc59", "svc58", "svc57", "svc56", "svc55", "other", "none"}
    # Nothing is lost by folding: the sum over processes is every socket.
    assert sum(per_process.values()) == len(snapshot.sockets)
    assert per_process[(("process", "svc59"), ("state", "ESTABLISHED"))] == 60

    listeners = values(text, "tcphealth_listener_accept_queue")
    assert len(listeners) == 6
    assert listeners[(("endpoint", "0.0.0.0:2059"), ("process", "svc59"))] == 59
    assert listeners[(("endpoint", "other"), ("process", "other"))] == sum(range(55))
    assert (
        values(text, "tcphealth_listener_backlog")[(("endpoint", "other"), ("process", "other"))]
        == 128 * 55
    )

    tw = values(text, "tcphealth_time_wait_destination_sockets")
    assert len(tw) == 6 and sum(tw.values()) == sum(range(1, 61))
    assert len(values(text, "tcphealth_time_wait_destination_port_ratio")) == 5

    fds = values(text, "tcphealth_process_open_fds")
    assert len(fds) == 6 and sum(fds.values()) == sum(10 + n for n in range(60))
    ratio = values(text, "tcphealth_process_fd_limit_ratio")
    assert ratio[(("process", "svc59"),)] == pytest.approx(69 / 1024)
    assert ratio[(("process", "other"),)] == pytest.approx(64 / 1024)  # the highest folded


def test_findings_past_the_top_are_folded_per_code() -> None:
    snapshot = snap([], [])
    made = [
        finding("close-wait-not-closed", Severity.WARNING, pid=n, process=f"p{n}", count=n)
        for n in range(1, 11)
    ] + [finding("fd-limit-near", Severity.CRITICAL, pid=99, process="db", count=5)]
    report = build_report(snapshot, made)
    text = exposition(families(report, KernelFacts({}, Sysctls()), top=3)).decode()
    found = values(text, "tcphealth_finding_sockets")
    by = {(dict(k)["code"], dict(k)["process"]): v for k, v in found.items()}
    # The first three in the report's order (most severe first) keep their labels; the rest
    # of the code is summed under "other".
    assert report.findings[0].severity is Severity.CRITICAL
    kept = {
        (finding.code, finding.subject.process): finding.count for finding in report.findings[:3]
    }
    assert ("fd-limit-near", "db") in kept
    folded = sum(finding.count for finding in report.findings[3:])
    assert by == {**kept, ("close-wait-not-closed", "other"): folded}
    assert folded == sum(range(1, 11)) - sum(
        count for (code, _), count in kept.items() if code != "fd-limit-near"
    )


def test_two_pids_of_one_name_are_one_series() -> None:
    made = [
        finding("close-wait-not-closed", Severity.WARNING, pid=1, process="java", count=30),
        finding("close-wait-not-closed", Severity.WARNING, pid=2, process="java", count=12),
    ]
    text = exposition(families(build_report(snap(), made), KernelFacts({}, Sysctls()))).decode()
    assert list(values(text, "tcphealth_finding_sockets").values()) == [42]


# --- hostile names ----------------------------------------------------------------------------

HOSTILE = {
    41: 'ev"il}\n{x="1"} 99',
    42: "\x1b[31mred\x1b[0m",
    43: "other",
    44: "back\\slash",
    45: "bad\udcffbyte",
    46: "\u202egnp.exe",
}


def test_label_text() -> None:
    assert label_text("nginx") == "nginx"
    assert label_text("other") == "other (process name)"
    assert label_text("none") == "none (process name)"
    assert label_text(None) == "unknown"
    assert label_text("\x1b[31mred") == "\\x1b[31mred"
    assert label_text("bad\udcffbyte") == "bad\\udcffbyte"


@needs_promtool
def test_hostile_process_names_keep_the_exposition_valid() -> None:
    sockets = [
        sock("CLOSE_WAIT", f"10.0.0.5:{40000 + n}", "10.0.0.9:5432", pid)
        for pid in HOSTILE
        for n in range(25)
    ]
    sockets += [
        sock("LISTEN", f"0.0.0.0:{8000 + pid}", "0.0.0.0:0", pid, listen_backlog=8)
        for pid in HOSTILE
    ]
    snapshot = snap(sockets, [proc(pid, name) for pid, name in HOSTILE.items()])
    data = exposition(families(analyse(snapshot), KernelFacts({}, snapshot.sysctls)))
    text = data.decode("utf-8")  # valid UTF-8: the undecodable byte became an escape
    per_process = values(text, "tcphealth_process_sockets")
    shown = {dict(labels)["process"] for labels in per_process}
    assert shown == {
        'ev"il}\\n{x="1"} 99',
        "\\x1b[31mred\\x1b[0m",
        "other (process name)",
        "back\\slash",
        "bad\\udcffbyte",
        "\\u202egnp.exe",
    }
    # No injected series: the only sample names are ours.
    assert all(name.startswith("tcphealth_") for name, _ in samples(text))
    codes = {dict(labels)["process"] for labels in values(text, "tcphealth_finding_sockets")}
    assert shown <= codes
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    openmetrics = exposition(
        families(analyse(snapshot), KernelFacts({}, snapshot.sysctls)), openmetrics=True
    )
    assert openmetrics.endswith(b"# EOF\n")


# --- promtool ---------------------------------------------------------------------------------


@needs_promtool
@pytest.mark.parametrize(
    "name", [*sorted(path.name for path in FIXTURES.glob("*.json")), "series/close-wait-leak.json"]
)
def test_promtool_check_metrics_on_every_fixture(name: str) -> None:
    text = run_metrics("--from", str(FIXTURES / name))
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout == "" and checked.stderr == ""  # not even a lint warning


@needs_promtool
def test_promtool_check_rules() -> None:
    checked = promtool("check", "rules", str(RULES / "tcphealth-rules.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 11 rules found" in checked.stdout


@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    tested = promtool("test", "rules", str(RULES / "tcphealth-rules.test.yml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_rule_has_a_unit_test_that_fires_it_and_names_a_command() -> None:
    import re

    rules = (RULES / "tcphealth-rules.yml").read_text()
    tests = (RULES / "tcphealth-rules.test.yml").read_text()
    alerts = re.findall(r"^      - alert: (\w+)$", rules, re.MULTILINE)
    assert len(alerts) == 11
    # Each rule's block has a command annotation that starts with a tcphealth command, or
    # the journal / systemd command that shows why tcphealth itself stopped.
    blocks = re.split(r"^      - alert: ", rules, flags=re.MULTILINE)[1:]
    for block in blocks:
        command = re.search(r'^          command: "(.*)"$', block, re.MULTILINE)
        assert command, block.splitlines()[0]
        assert command.group(1).startswith(("tcphealth ", "journalctl ", "systemctl "))
    # Each alert is expected to fire (a non-empty exp_alerts) in at least one unit test.
    fired = re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels", tests)
    assert set(fired) == set(alerts)


# --- the textfile -----------------------------------------------------------------------------


def test_textfile_is_written_atomically_and_readable(tmp_path: Path) -> None:
    target = tmp_path / "tcphealth.prom"
    target.write_text("old\n")
    fixture = str(FIXTURES / "close-wait-leak.json")
    run_metrics("--from", fixture, "-o", str(target))
    assert target.read_text() == run_metrics("--from", fixture)
    assert [path.name for path in tmp_path.iterdir()] == ["tcphealth.prom"]  # no temporary left
    assert stat.S_IMODE(target.stat().st_mode) & stat.S_IROTH  # node_exporter may read it


def test_textfile_kept_when_the_input_is_unreadable(tmp_path: Path) -> None:
    target = tmp_path / "tcphealth.prom"
    target.write_text("previous\n")
    result = CliRunner().invoke(
        main, ["metrics", "--from", str(tmp_path / "missing.json"), "-o", str(target)]
    )
    assert result.exit_code == 3
    assert target.read_text() == "previous\n"
    assert [path.name for path in tmp_path.iterdir()] == ["tcphealth.prom"]


def test_textfile_into_a_missing_directory_is_one_line_exit_3(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "metrics",
            "--from",
            str(FIXTURES / "healthy.json"),
            "-o",
            str(tmp_path / "no" / "x.prom"),
        ],
    )
    assert result.exit_code == 3
    assert result.stderr.startswith("tcphealth: cannot write ")
    assert len(result.stderr.splitlines()) == 1


def test_report_families_of_a_paste_with_several_captures_uses_the_last() -> None:
    first = snap([sock("ESTABLISHED", "10.0.0.5:40000", "10.0.0.9:80", 1)], [proc(1, "a")])
    second = snap([sock("CLOSE_WAIT", "10.0.0.5:40000", "10.0.0.9:80", 1)], [proc(1, "a")])
    text = exposition(report_families([first, second], "paste.txt")).decode()
    states = values(text, "tcphealth_sockets")
    assert states[(("state", "CLOSE_WAIT"),)] == 1 and states[(("state", "ESTABLISHED"),)] == 0


def test_self_families_on_failure() -> None:
    text = exposition(self_families(success=False, duration_seconds=0.25)).decode()
    assert values(text, "tcphealth_collect_success") == {(): 0}
    assert values(text, "tcphealth_collect_duration_seconds") == {(): 0.25}


def test_state_counts_cover_the_eleven_states() -> None:
    text = run_metrics("--from", str(FIXTURES / "healthy.json"))
    states = {dict(labels)["state"] for labels in values(text, "tcphealth_sockets")}
    assert states >= {
        state.value for state in TcpState if state.name not in ("BOUND_INACTIVE", "UNKNOWN")
    }
    assert Counter(name for name, _ in samples(text))["tcphealth_sockets"] == len(states)


def test_a_socket_shared_by_workers_of_one_name_counts_once_for_it() -> None:
    # nginx's master and two workers share the listener (fork); one connection is held by
    # nginx and a helper it passed the descriptor to; one TIME_WAIT is nobody's.
    sockets = [
        sock("LISTEN", "0.0.0.0:80", "0.0.0.0:0", 10, 11, 12, listen_backlog=511),
        sock("ESTABLISHED", "10.0.0.5:80", "10.9.0.1:40000", 11, 20),
        sock("TIME_WAIT", "10.0.0.5:80", "10.9.0.2:40001"),
    ]
    processes = [proc(10, "nginx"), proc(11, "nginx"), proc(12, "nginx"), proc(20, "helper")]
    text = exposition(families(analyse(snap(sockets, processes)), KernelFacts({}, Sysctls())))
    assert values(text.decode(), "tcphealth_process_sockets") == {
        (("process", "helper"), ("state", "ESTABLISHED")): 1,
        (("process", "nginx"), ("state", "ESTABLISHED")): 1,
        (("process", "nginx"), ("state", "LISTEN")): 1,
        (("process", "none"), ("state", "TIME_WAIT")): 1,
    }


def test_the_glob_in_a_command_annotation_finds_the_hostile_process() -> None:
    """The rules turn every character of a process name outside [A-Za-z0-9._:/@+-] into `?`
    in their `command` annotations (no quote can end the shell's quoting there); the glob
    must still select that process."""
    import re

    from tcphealth.filters import SocketFilter, apply_filter

    name = "x'; rm -rf ~ #"
    rules = (RULES / "tcphealth-rules.yml").read_text()
    pattern, replacement = re.findall(r"reReplaceAll `([^`]+)` `([^`]+)` \$labels\.process", rules)[
        0
    ]
    glob = re.sub(pattern, replacement, name)
    assert glob == "x???rm?-rf????" and "'" not in glob
    sockets = [
        sock("ESTABLISHED", "10.0.0.5:40000", "10.0.0.9:80", 5),
        sock("LISTEN", "0.0.0.0:22", "0.0.0.0:0", 6),
    ]
    snapshot = snap(sockets, [proc(5, name), proc(6, "sshd")])
    chosen = apply_filter(snapshot, SocketFilter(processes=(glob,)))
    assert [each.pids for each in chosen.sockets] == [(5,)]


def test_time_wait_per_destination_counts_by_value_whatever_objects_the_source_shares() -> None:
    # The exporter counts TIME_WAIT by the identities of the address objects (sources share
    # them): equal endpoints that are separate objects, one shared object, host names standing
    # in for an address (a paste's), and a v4-mapped local address must all count by value.
    mapped = ipaddress.ip_address("::ffff:10.0.0.7")
    unspecified = ipaddress.ip_address("0.0.0.0")  # one object behind both names
    here = ipaddress.ip_address("10.0.0.7")  # one object, as a source shares it
    shared_remote = Endpoint(ipaddress.ip_address("198.51.100.20"), 443)
    tw = TcpState.TIME_WAIT
    sockets = [
        *(sock(tw, f"10.0.0.7:{40000 + i}", "198.51.100.20:443") for i in range(5)),
        *(
            Socket(
                Family.IPV4,
                Endpoint(here, 41000 + i),
                shared_remote,
                tw,
            )
            for i in range(3)
        ),
        *(
            Socket(
                Family.IPV4,
                Endpoint(here, 42000 + i),
                Endpoint(unspecified, 443, name),
                tw,
            )
            for i in range(4)
            for name in ("db-1", "db-2")
        ),
        *(  # the same address object on another port: another destination
            Socket(
                Family.IPV4, Endpoint(here, 44000 + i), Endpoint(shared_remote.address, 8443), tw
            )
            for i in range(3)
        ),
        *(
            Socket(
                Family.IPV6,
                Endpoint(mapped, 43000 + i),
                Endpoint(ipaddress.ip_address("::ffff:198.51.100.20"), 443),
                tw,
            )
            for i in range(2)
        ),
        sock(tw, "10.0.0.7:80", "198.51.100.20:443"),  # a server's port: not counted
    ]
    counts = values(
        exposition(report_families([snap(sockets)], top=50)).decode(),
        "tcphealth_time_wait_destination_sockets",
    )
    assert counts == {
        (("destination", "198.51.100.20:443"), ("local_address", "10.0.0.7")): 8,
        (("destination", "198.51.100.20:8443"), ("local_address", "10.0.0.7")): 3,
        (("destination", "db-1:443"), ("local_address", "10.0.0.7")): 4,
        (("destination", "db-2:443"), ("local_address", "10.0.0.7")): 4,
        (("destination", "[::ffff:198.51.100.20]:443"), ("local_address", "10.0.0.7")): 2,
    }
