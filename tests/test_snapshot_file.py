"""The versioned snapshot file: save -> load loses nothing; bad files are one clear error."""

from __future__ import annotations

import io
import ipaddress
import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from tcphealth.cli import main
from tcphealth.errors import SnapshotFormatError
from tcphealth.model import (
    Attribution,
    Endpoint,
    ErrorKind,
    ErrorLine,
    Family,
    HostInfo,
    OwnerSource,
    Process,
    Snapshot,
    Socket,
    Sysctls,
    TcpInfo,
    TcpState,
    TimerKind,
)
from tcphealth.sources.snapshot_file import (
    FORMAT_NAME,
    FORMAT_VERSION,
    _encode,
    _version_of,
    read_snapshot,
    snapshot_from_json,
    snapshot_to_json,
    write_snapshot,
)


def full_snapshot() -> Snapshot:
    """A snapshot with every kind of field set, including unknowns (None)."""
    v4 = Socket(
        family=Family.IPV4,
        local=Endpoint(ipaddress.IPv4Address("10.0.0.1"), 5432),
        remote=Endpoint(ipaddress.IPv4Address("10.0.0.9"), 40000),
        state=TcpState.CLOSE_WAIT,
        send_queue=0,
        recv_queue=1,
        timer=TimerKind.KEEPALIVE,
        timer_seconds=12.34,
        retransmits=0,
        probes=None,
        uid=1000,
        inode=4242,
        pids=(812, 813),
        owner_source=OwnerSource.FD,
        cookie=2**63 + 5,
        tcp_info=TcpInfo(last_data_recv_ms=6000, rtt_us=40, unacked=None),
    )
    v6 = Socket(
        family=Family.IPV6,
        local=Endpoint(ipaddress.IPv6Address("::ffff:127.0.0.1"), 80),
        remote=Endpoint(ipaddress.IPv6Address("fe80::1"), None),
        state=TcpState.UNKNOWN,
        raw_state="3F",
    )
    listener = Socket(
        family=Family.IPV6,
        local=Endpoint(ipaddress.IPv6Address("::"), 80),
        remote=Endpoint(ipaddress.IPv6Address("::"), 0),
        state=TcpState.LISTEN,
        recv_queue=129,
        listen_backlog=128,
    )
    return Snapshot(
        host=HostInfo(
            hostname="db-1",
            kernel="6.18.0",
            taken_at=1763737200.125,
            source="procfs",
            privileged=True,
            platform="linux",
        ),
        attribution=Attribution(attempted=True, processes_scanned=70, processes_vanished=2),
        sysctls=Sysctls(tcp_fin_timeout=60, ip_local_port_range=(32768, 60999)),
        counters={"TcpExt.ListenOverflows": 7, "sockstat.TCP.tw": 0},
        processes=(
            Process(
                pid=812,
                name="java",
                user="app",
                uid=1000,
                cmdline=("java", "-jar", "[bold red]x\x1b[2J"),
                open_fds=900,
                fd_soft_limit=1024,
                fd_hard_limit=None,
            ),
            Process(pid=813),
        ),
        sockets=(v4, v6, listener),
        notes=("net/tcp: 1 row(s) listed a socket a second time",),
    )


def test_round_trip_is_identical() -> None:
    snap = full_snapshot()
    text = snapshot_to_json(snap)
    assert snapshot_from_json(text, "t") == snap
    assert snapshot_to_json(snapshot_from_json(text, "t")) == text  # stable bytes


def test_document_shape() -> None:
    text = snapshot_to_json(full_snapshot())
    assert text.endswith("}\n")
    document = json.loads(text)
    # Without network namespaces a snapshot is still written as version 1, as before them.
    assert (document["format"], document["version"]) == ("tcphealth.snapshot", 1)
    assert list(document) == sorted(document)
    sock = document["snapshot"]["sockets"][0]
    assert sock["state"] == "CLOSE_WAIT"
    assert sock["local"] == {"address": "10.0.0.1", "port": 5432}
    assert sock["probes"] is None  # unknown is null, never 0
    assert document["snapshot"]["sysctls"]["tcp_syn_retries"] is None


def test_write_is_atomic_and_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "snap.json"
    target.write_text("old content\n")

    bad = full_snapshot()
    object.__setattr__(bad, "counters", {"x": object()})  # cannot be encoded
    with pytest.raises(TypeError):
        write_snapshot(bad, target)
    assert target.read_text() == "old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap.json"]  # no temp file left

    write_snapshot(full_snapshot(), target)
    assert read_snapshot(target) == full_snapshot()


def test_read_from_stdin() -> None:
    text = snapshot_to_json(full_snapshot())
    assert read_snapshot("-", io.StringIO(text)) == full_snapshot()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d.update(version=FORMAT_VERSION + 1),
            f"version {FORMAT_VERSION + 1} is newer than this tcphealth reads",
        ),
        (lambda d: d.update(version="1"), '"version" must be an integer'),
        (lambda d: d.update(format="other"), "not a tcphealth snapshot"),
        (lambda d: d["snapshot"]["sockets"][0].update(state="BOGUS"), "snapshot.sockets[0].state"),
        (lambda d: d["snapshot"]["sockets"][0].update(pids=["x"]), "snapshot.sockets[0].pids[0]"),
        (lambda d: d["snapshot"]["sockets"][0].update(recv_queue=True), "expected an integer"),
        (lambda d: d["snapshot"]["sockets"][0]["local"].update(address="999.1.1.1"), "address"),
        (lambda d: d["snapshot"]["host"].pop("taken_at"), "missing field 'taken_at'"),
        (lambda d: d["snapshot"]["host"].update(colour=1), "unknown field 'colour'"),
        (lambda d: d["snapshot"].update(sockets={}), "snapshot.sockets: expected a list"),
    ],
)
def test_wrong_shapes_name_the_field(mutate, message: str) -> None:
    document = json.loads(snapshot_to_json(full_snapshot()))
    mutate(document)
    with pytest.raises(SnapshotFormatError) as caught:
        snapshot_from_json(json.dumps(document), "snap.json")
    assert message in str(caught.value)
    assert str(caught.value).startswith("snap.json")


def test_truncated_json_names_the_line() -> None:
    text = snapshot_to_json(full_snapshot())
    with pytest.raises(SnapshotFormatError) as caught:
        snapshot_from_json(text[: len(text) // 2], "cut.json")
    assert caught.value.line is not None
    assert "not valid JSON" in str(caught.value)


def test_cli_snapshot_then_from(tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    source.write_text(snapshot_to_json(full_snapshot()))
    out = tmp_path / "out.json"
    runner = CliRunner()
    result = runner.invoke(main, ["snapshot", "--from", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == source.read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty (0 bytes): nothing to read"),
        (b"\x00\xff\xfe binary", "not UTF-8"),
        (b'{"format": "tcphealth.snapshot", "version": 99, "snapshot": {}}', "version 99"),
    ],
)
def test_cli_unreadable_snapshot_exits_3_with_one_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    result = CliRunner().invoke(main, ["snapshot", "--from", str(bad)])
    assert result.exit_code == 3
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"tcphealth: {bad}")
    assert message in line
    assert "Traceback" not in result.stderr


def test_cli_missing_file_exits_3(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["snapshot", "--from", str(tmp_path / "nope.json")])
    assert result.exit_code == 3
    assert "No such file or directory" in result.stderr


def _indented_everywhere(snapshot: Snapshot) -> str:
    """The file as tcphealth wrote it before sockets went one per line: every level indented
    (json's own encoder over the generic _encode), kept here as the reference."""
    # The version is not what this reference is about: 1, or 2 for what version 2 added.
    version = _version_of(snapshot)
    document = {"format": FORMAT_NAME, "version": version, "snapshot": _encode(snapshot)}
    return json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def _scenario_snapshots() -> list[Snapshot]:
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    return [read_snapshot(path) for path in sorted(fixtures.glob("*.json"))]


def test_the_same_document_as_the_indented_writer() -> None:
    for snap in [full_snapshot(), replace(full_snapshot(), sockets=()), *_scenario_snapshots()]:
        assert json.loads(snapshot_to_json(snap)) == json.loads(_indented_everywhere(snap))


def test_files_indented_everywhere_still_load() -> None:
    for snap in [full_snapshot(), *_scenario_snapshots()]:
        text = _indented_everywhere(snap)
        assert snapshot_from_json(text, "old.json") == snap
        # ... and saving what they hold gives the current layout, stably.
        assert snapshot_to_json(snapshot_from_json(text, "old.json")) == snapshot_to_json(snap)


def test_one_line_per_socket() -> None:
    snap = full_snapshot()
    lines = snapshot_to_json(snap).splitlines()
    start = lines.index('  "sockets": [')
    records = lines[start + 1 : start + 1 + len(snap.sockets)]
    assert lines[start + 1 + len(snap.sockets)] == "  ],"
    assert [json.loads(line.strip().rstrip(",")) for line in records] == json.loads(
        _indented_everywhere(snap)
    )["snapshot"]["sockets"]
    assert all(line.startswith("   {") for line in records)


def test_no_sockets_is_an_empty_list() -> None:
    text = snapshot_to_json(replace(full_snapshot(), sockets=()))
    assert '  "sockets": [],\n' in text
    assert text == _indented_everywhere(replace(full_snapshot(), sockets=()))


def test_streamed_to_stdout_as_to_a_file(tmp_path: Path) -> None:
    out = io.StringIO()
    write_snapshot(full_snapshot(), None, out)
    target = tmp_path / "snap.json"
    write_snapshot(full_snapshot(), target)
    assert out.getvalue() == target.read_text(encoding="utf-8") == snapshot_to_json(full_snapshot())


def test_the_limits_sysctls_are_left_out_unless_set_and_then_say_version_2() -> None:
    plain = replace(full_snapshot(), sysctls=Sysctls(tcp_fin_timeout=60))
    text = snapshot_to_json(plain)
    assert json.loads(text)["version"] == 1
    assert "tcp_mem" not in text and "nf_conntrack_max" not in text
    limits = replace(plain, sysctls=Sysctls(tcp_mem=(1, 2, 3), ip_local_reserved_ports=()))
    text = snapshot_to_json(limits)
    assert json.loads(text)["version"] == 2
    assert json.loads(text)["snapshot"]["sysctls"]["tcp_mem"] == [1, 2, 3]
    assert snapshot_from_json(text, "limits.json") == limits


def test_tcp_info_sending_times_are_left_out_unless_known_and_then_say_version_2() -> None:
    plain = replace(full_snapshot(), sysctls=Sysctls(tcp_fin_timeout=60))
    text = snapshot_to_json(plain)
    assert json.loads(text)["version"] == 1
    assert "busy_time_us" not in text and "rwnd_limited_us" not in text
    first = plain.sockets[0]
    assert first.tcp_info is not None
    timed = replace(
        first,
        tcp_info=replace(
            first.tcp_info, busy_time_us=5_000, rwnd_limited_us=4_000, sndbuf_limited_us=0
        ),
    )
    with_times = replace(plain, sockets=(timed, *plain.sockets[1:]))
    text = snapshot_to_json(with_times)
    assert json.loads(text)["version"] == 2
    record = json.loads(text)["snapshot"]["sockets"][0]["tcp_info"]
    assert (record["busy_time_us"], record["rwnd_limited_us"], record["sndbuf_limited_us"]) == (
        5_000,
        4_000,
        0,
    )
    assert snapshot_from_json(text, "times.json") == with_times
    assert json.loads(text) == json.loads(_indented_everywhere(with_times))


def test_a_socket_s_drops_are_left_out_unless_known_and_then_say_version_2() -> None:
    plain = replace(full_snapshot(), sysctls=Sysctls(tcp_fin_timeout=60))
    assert '"drops"' not in snapshot_to_json(plain)
    counted = replace(plain, sockets=(replace(plain.sockets[0], drops=0), *plain.sockets[1:]))
    text = snapshot_to_json(counted)
    assert json.loads(text)["version"] == 2
    assert json.loads(text)["snapshot"]["sockets"][0]["drops"] == 0  # known 0 is kept
    assert snapshot_from_json(text, "drops.json") == counted
    assert json.loads(text) == json.loads(_indented_everywhere(counted))


def test_a_paste_s_error_lines_are_left_out_unless_there_and_then_say_version_2() -> None:
    plain = replace(full_snapshot(), sysctls=Sysctls(tcp_fin_timeout=60))
    assert '"error_lines"' not in snapshot_to_json(plain)
    logged = replace(
        plain,
        error_lines=(
            ErrorLine(ErrorKind.DESCRIPTORS, "accept4: too many open files", 2, 7),
            ErrorLine(ErrorKind.LOCAL_PORTS, "connect: cannot assign requested address", 1, 9),
        ),
    )
    text = snapshot_to_json(logged)
    assert json.loads(text)["version"] == 2
    assert json.loads(text)["snapshot"]["error_lines"][0] == {
        "kind": "too-many-open-files",
        "text": "accept4: too many open files",
        "count": 2,
        "line": 7,
    }
    assert snapshot_from_json(text, "errors.json") == logged
