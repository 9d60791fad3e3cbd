"""Memory bounded by design (issue 26): big inputs are read as they come, never held whole
beside what is made of them.

Peaks are measured with tracemalloc over the reading alone, in bytes per socket, against the
documented rate (:data:`tcphealth.bounds.MEMORY_PER_SOCKET_BYTES`); the whole-process figures
at 300,000 sockets and 1,000,000 rows are ``make bench-memory``'s (benchmarks/RESULTS.md). The
streaming readers must still read exactly what the whole-text readers read: same lines, same
values, same errors.
"""

from __future__ import annotations

import json
import random
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.memory import write_snapshot_file, write_table
from tcphealth import bounds, sources
from tcphealth.errors import SnapshotFormatError
from tcphealth.sources import json_stream, snapshot_file
from tcphealth.sources.text.lines import iter_lines

REPO = Path(__file__).resolve().parent.parent
SOCKETS = 20_000
# What reading alone may cost a socket, within the documented rate (the diagnosis and the
# report need the rest), at these sizes, where the bounded tables of shared endpoints weigh
# the most: 700-850 bytes today, against 2,850 (snapshot) and 1,270 (/proc table) before
# issue 26's memory work.
READ_BUDGET = 950
assert READ_BUDGET < bounds.MEMORY_PER_SOCKET_BYTES


def _peak_per_socket(read: Callable[[], Any], sockets: int) -> tuple[Any, float]:
    tracemalloc.start()
    try:
        result = read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak / sockets


def test_a_snapshot_replay_never_holds_its_text_or_a_json_tree(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    write_snapshot_file(path, SOCKETS)
    assert path.stat().st_size > 400 * SOCKETS  # the text alone would be over the budget below
    (snapshot,), per_socket = _peak_per_socket(lambda: snapshot_file.read_snapshots(path), SOCKETS)
    assert len(snapshot.sockets) == SOCKETS
    # The text (440 bytes a socket) and the dicts json.loads made (1,400) were both held
    # beside the sockets before: 2,850 bytes a socket.
    assert per_socket < READ_BUDGET, per_socket
    # Equal endpoints and addresses are one object each, as a live collection has them: the
    # file's 20,000 sockets talk to 5,000 peers (one port each) from one local address.
    assert len({id(sock.remote) for sock in snapshot.sockets}) == 5000
    assert len({id(sock.local.address) for sock in snapshot.sockets}) == 1


def test_a_snapshot_without_json_in_its_name_is_read_as_it_comes_too(tmp_path: Path) -> None:
    named = tmp_path / "big.json"
    write_snapshot_file(named, SOCKETS)
    unnamed = tmp_path / "capture"
    named.rename(unnamed)
    (snapshot,), per_socket = _peak_per_socket(lambda: sources.load_series(unnamed), SOCKETS)
    assert len(snapshot.sockets) == SOCKETS
    assert per_socket < READ_BUDGET, per_socket


def test_a_proc_table_copy_is_read_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "tcp"
    rows = 2 * SOCKETS
    write_table(path, rows)
    (snapshot,), per_socket = _peak_per_socket(lambda: sources.load_series(path), rows)
    assert snapshot.skipped_lines == 0
    assert len(snapshot.sockets) == rows
    # Before: the bytes, their text and a list of its lines (about 450 bytes a row) beside the
    # sockets, and every endpoint and uid made anew: 1,270 bytes a row.
    assert per_socket < READ_BUDGET, per_socket


def test_iter_lines_is_splitlines_one_line_at_a_time() -> None:
    rng = random.Random(26)
    alphabet = "ab \r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
    cases = ["", "\n", "a", "a\n", "a\r\n", "\r\n\r\n", "a\x85\nb", "a\r", "a\r\rb\n"]
    cases += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 16))) for _ in range(5000)]
    for text in cases:
        assert list(iter_lines(text)) == text.splitlines(), repr(text)


def _loads(text: str) -> tuple[Any, ...]:
    try:
        return ("value", json.loads(text))
    except json.JSONDecodeError as error:
        return ("error", error.msg, error.lineno, error.colno)


def _streamed(text: str, size: int) -> tuple[Any, ...]:
    pieces = iter([text[i : i + size] for i in range(0, len(text), size)])
    walk = {(), ("snapshot",), ("samples",), ("samples", "*")}
    try:
        return ("value", json_stream.parse(pieces, json.JSONDecoder(), walk=walk, items={}))
    except json.JSONDecodeError as error:
        return ("error", error.msg, error.lineno, error.colno)


def test_the_streaming_decoder_reads_and_refuses_exactly_what_json_loads_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A window of a few characters, so that every value and every error meets its edge.
    monkeypatch.setattr(json_stream, "_CHUNK", 3)
    rng = random.Random(26)
    seeds = [
        path.read_text(encoding="utf-8") for path in sorted((REPO / "fixtures").glob("*.json"))
    ]
    seeds = [seed[:4000] for seed in seeds[:12]] + ['{"a": [1, 2.5e3, "x\\u00e9", null]}', "[]"]
    tried = refused = 0
    for seed in seeds:
        for _ in range(40):
            text = list(seed)
            for _ in range(rng.randint(0, 3)):
                at = rng.randrange(len(text) + 1)
                if rng.random() < 0.5 and text:
                    del text[min(at, len(text) - 1)]
                else:
                    text.insert(at, rng.choice('{}[],:" \n\tx0-.e\ufeff'))
            document = "".join(text)
            expected = _loads(document)
            assert _streamed(document, rng.randint(1, 40)) == expected, repr(document[:200])
            tried += 1
            refused += expected[0] == "error"
    assert tried == len(seeds) * 40
    assert 0 < refused < tried  # both kinds were compared


def test_a_bad_socket_is_still_named_by_its_index_and_field(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    write_snapshot_file(path, 300)
    document = json.loads(path.read_text(encoding="utf-8"))
    document["snapshot"]["sockets"][217]["remote"]["port"] = "5432"
    document["snapshot"]["sockets"][250]["local"]["port"] = 70000
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(SnapshotFormatError) as caught:
        snapshot_file.read_snapshots(path)
    assert str(caught.value) == (
        f"{path}: snapshot.sockets[217].remote.port: expected an integer, got a string"
    )
    document["snapshot"]["sockets"][217]["remote"]["port"] = 5432
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(SnapshotFormatError) as caught:
        snapshot_file.read_snapshots(path)
    assert "snapshot.sockets[250].local" in str(caught.value)
    assert "70000" in str(caught.value)


def test_not_utf8_is_named_at_its_byte_across_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    write_snapshot_file(path, 5000)  # over 1 MiB: the bad byte is in the third chunk
    data = bytearray(path.read_bytes())
    at = (2 << 20) + 12345
    data[at] = 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotFormatError) as caught:
        snapshot_file.read_snapshots(path)
    assert str(caught.value) == f"{path}: not UTF-8 text (byte {at})"


def test_the_readme_states_the_bound_the_fuzz_checks() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    fixed = f"{bounds.MEMORY_FIXED_BYTES >> 20} MiB"
    rate = f"{bounds.MEMORY_PER_SOCKET_BYTES:,} bytes"
    assert f"at most {fixed} plus\n  {rate} for each socket" in readme


def test_a_text_file_read_as_it_comes_gives_what_the_whole_text_gives() -> None:
    """Every paste and /proc copy of fixtures/realworld read from its file (line by line as
    the file is read) and from its text (whole, as standard input is): the same sockets, the
    same skipped lines, the same errors."""
    from tcphealth.errors import InputError
    from tcphealth.sources import text

    pastes = sorted((REPO / "fixtures" / "realworld").glob("*.txt"))
    pastes += sorted((REPO / "fixtures" / "realworld" / "threads").glob("*.txt"))
    assert len(pastes) > 20
    compared = 0
    for path in pastes:
        whole = path.read_bytes().decode("utf-8", errors="replace")
        try:
            expected: Any = [
                (snap.sockets, snap.skipped_lines)
                for snap in text.read_text(whole, str(path), taken_at=path.stat().st_mtime)
            ]
        except InputError as error:
            expected = str(error)
        try:
            got: Any = [(snap.sockets, snap.skipped_lines) for snap in sources.load_series(path)]
        except InputError as error:
            got = str(error)
        assert got == expected, path.name
        compared += 1
    assert compared == len(pastes)


def _ss_rows(count: int) -> str:
    rows = [
        f"ESTAB 0 0 10.0.{n // 60000 % 250}.{n // 250 % 240 + 1}:{1024 + n % 60000} 10.9.9.9:5432"
        for n in range(count)
    ]
    return "State Recv-Q Send-Q Local Address:Port Peer Address:Port\n" + "\n".join(rows) + "\n"


def test_a_paste_holds_at_most_the_documented_number_of_sockets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from tcphealth.cli import main

    # The bound the cap is there for: at the cap, a paste stays within 1 GiB by the rate.
    cap = bounds.PASTE_SOCKET_LIMIT
    assert bounds.MEMORY_FIXED_BYTES + cap * bounds.MEMORY_PER_SOCKET_BYTES <= 1 << 30
    # Lowered here so the test reads a few rows, not 970,000 (make bench-memory reads them).
    monkeypatch.setattr(bounds, "PASTE_SOCKET_LIMIT", 3)
    at_cap, over = tmp_path / "three.txt", tmp_path / "four.txt"
    at_cap.write_text(_ss_rows(3), "utf-8")
    over.write_text(_ss_rows(4), "utf-8")
    read = CliRunner().invoke(main, ["sockets", "--from", str(at_cap), "--format", "json"])
    assert read.exit_code == 0, read.output
    assert len(json.loads(read.stdout)["sockets"]) == 3
    refused = CliRunner().invoke(main, ["check", "--from", str(over)])
    assert refused.exit_code == 3
    assert refused.stderr.strip() == (
        f"tcphealth: {over}:5: more than 3 socket rows: a paste is read up to that many, to "
        "keep memory within its bound (the README's size limits); save a snapshot on the host "
        "instead (tcphealth snapshot -o)"
    )


def test_a_report_where_every_connection_is_a_group_of_its_own(tmp_path: Path) -> None:
    """The report's grouping, the peak of a run whose connections all differ (each its own
    group: one client address, 20,000 peers): its tables of groups are handed on and let go
    as they go, never two of them whole at once. 687 bytes a socket at de6c8eb, 466 now."""
    from benchmarks.memory import write_transcript
    from tcphealth.diagnose import diagnose
    from tcphealth.report import build_report

    path = tmp_path / "ss.txt"
    write_transcript(path, SOCKETS, 0)
    (snapshot,) = sources.load_series(path)
    findings = diagnose(snapshot)
    report, per_socket = _peak_per_socket(lambda: build_report(snapshot, findings), SOCKETS)
    assert len(report.unowned.groups) == SOCKETS
    assert report.unowned.socket_count == SOCKETS
    assert per_socket < 560, per_socket
