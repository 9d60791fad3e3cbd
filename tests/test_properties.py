"""Property tests: every reader gives a snapshot or our own error, whatever it is fed, and a
snapshot survives the file round trip and every renderer.

The text parsers (tests/test_text_fuzz.py) and the netlink decoder (tests/test_netlink.py)
have their own; here: the snapshot JSON reader, the /proc table parser, ``sources.load`` over
raw bytes in a file, the save -> load round trip over generated snapshots, and the whole
pipeline (diagnose, report, every format) over any snapshot a file can hold.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcphealth import sources
from tcphealth.errors import InputError, ProcParseError, SnapshotFormatError
from tcphealth.model import Family, Snapshot
from tcphealth.pipeline import analyse
from tcphealth.render import FORMATS, Environment, RenderOptions, View
from tcphealth.render.nagios import status_line
from tcphealth.sources import procfs
from tcphealth.sources.snapshot_file import (
    read_snapshot,
    snapshot_from_document,
    snapshot_from_json,
    snapshot_to_json,
    write_snapshot,
)
from tests.inertness import control_bytes
from tests.snapshot_strategies import out_of_kernel_range, snapshots

REPO = Path(__file__).resolve().parent.parent
REAL = json.loads((REPO / "fixtures" / "close-wait-leak.json").read_text(encoding="utf-8"))
FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 70), 1 << 70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document, as a path of keys and indexes."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):  # a few sockets are enough
            found += _paths(item, (*prefix, index))
    return found


REAL_PATHS = _paths(REAL)[1:]


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    """The real snapshot with a few values replaced by any JSON value, or removed."""
    document = json.loads(json.dumps(REAL))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(REAL_PATHS))
        parent = document
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()) and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed the way there
    return document


def _snapshot_or_our_error(read: Any) -> None:
    with contextlib.suppress(SnapshotFormatError):
        assert isinstance(read(), Snapshot)


@FAST
@given(document=mutated_documents())
def test_a_mis_shaped_snapshot_is_a_snapshot_or_our_error(document: Any) -> None:
    _snapshot_or_our_error(lambda: snapshot_from_document(document, "x.json"))
    _snapshot_or_our_error(lambda: snapshot_from_json(json.dumps(document), "x.json"))


@FAST
@given(value=json_values)
def test_any_json_value_is_a_snapshot_or_our_error(value: Any) -> None:
    _snapshot_or_our_error(lambda: snapshot_from_document(value, "x.json"))
    wrapped = {"format": "tcphealth.snapshot", "version": 1, "snapshot": value}
    _snapshot_or_our_error(lambda: snapshot_from_document(wrapped, "x.json"))


@FAST
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.sampled_from(["{", "[", '{"a":']).map(lambda start: start * 5000),
        st.builds(
            lambda keep, junk: json.dumps(REAL)[:keep] + junk,
            st.integers(0, 3000),
            st.text(alphabet='{}[]",:0123456789.eE-+ truefalsn\\NaInfity', max_size=20),
        ),
    )
)
def test_any_text_is_a_snapshot_or_our_error(text: str) -> None:
    _snapshot_or_our_error(lambda: snapshot_from_json(text, "x.json"))


# --- the /proc table parser ----------------------------------------------------------------

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
HEX = "0123456789ABCDEFabcdef"
tokens = st.one_of(
    st.text(alphabet=HEX, min_size=1, max_size=34),
    st.builds(
        lambda a, b: f"{a}:{b}",
        st.text(alphabet=HEX, max_size=33),
        st.text(alphabet=HEX, max_size=5),
    ),
    st.text(alphabet=HEX + ":-xX +_\t\r\x00é", max_size=12),
    st.integers(-(1 << 70), 1 << 70).map(str),
)
rows = st.builds(
    lambda sl, fields: f"{sl}: " + " ".join(fields),
    st.integers(0, 99),
    st.lists(tokens, min_size=0, max_size=20),
)


@FAST
@given(
    lines=st.lists(st.one_of(rows, st.text(max_size=60)), max_size=12),
    family=st.sampled_from(list(Family)),
    strict=st.booleans(),
    byteorder=st.sampled_from(["little", "big"]),
)
def test_any_proc_table_parses_or_raises_our_error(
    lines: list[str], family: Family, strict: bool, byteorder: Any
) -> None:
    try:
        parsed = procfs.parse_table(
            [HEADER, *lines], family, "tcp", byteorder=byteorder, strict=strict
        )
    except ProcParseError:
        return
    assert len(parsed.sockets) + len(parsed.skipped) + parsed.duplicates <= len(lines)


# --- whatever bytes a file holds ---------------------------------------------------------------


@FAST
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.sampled_from([b"\xff\xfe", b"\xef\xbb\xbf", b"{", b"  sl  local_address st\n"]).flatmap(
            lambda head: st.binary(max_size=200).map(lambda tail: head + tail)
        ),
    ),
    suffix=st.sampled_from([".json", ".txt", ""]),
    input_format=st.sampled_from(sources.INPUT_FORMATS),
)
def test_any_bytes_in_a_file_load_or_raise_our_error(
    data: bytes, suffix: str, input_format: str
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"input{suffix}"
        path.write_bytes(data)
        with contextlib.suppress(InputError):
            assert isinstance(sources.load(path, input_format=input_format), Snapshot)
        stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace")
        with contextlib.suppress(InputError):
            assert isinstance(sources.load("-", stdin, input_format=input_format), Snapshot)


# --- generated snapshots -------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(snapshot=snapshots())
def test_save_then_load_gives_the_same_snapshot(snapshot: Snapshot) -> None:
    """... where every value is one a kernel can give; else loading refuses the field."""
    text = snapshot_to_json(snapshot)
    if out_of_kernel_range(snapshot):
        with pytest.raises(SnapshotFormatError, match=r"snapshot\.\w+(\[\d+\])?\.\w+"):
            snapshot_from_json(text, "mem")
        return
    assert snapshot_from_json(text, "mem") == snapshot
    assert snapshot_to_json(snapshot_from_json(text, "mem")) == text  # the same bytes again
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "snap.json"
        write_snapshot(snapshot, path)
        assert read_snapshot(path) == snapshot
        assert sources.load(path) == snapshot


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(snapshot=snapshots())
def test_any_snapshot_is_diagnosed_and_rendered_inert_in_every_format(
    snapshot: Snapshot,
) -> None:
    """A file from a stranger that decodes -- negative queues, ports of 2**64, addresses of
    the other family, escape sequences in every string -- never crashes the pipeline, and no
    format lets a control byte through."""
    report = analyse(snapshot)
    assert control_bytes(status_line(report).encode("utf-8", "surrogatepass")) == []
    for name, renderer in FORMATS.items():
        for view in View:
            for colour in (False, True):
                out = io.StringIO()
                env = Environment(
                    stdout=out, stderr=io.StringIO(), stdout_isatty=colour, color=colour, width=70
                )
                options = RenderOptions(view=view, show_all=True, with_sockets=True, limit=0)
                renderer(report, options, env)
                written = out.getvalue()
                if name in ("json", "ndjson"):
                    assert written.isascii()
                    for line in written.splitlines() if name == "ndjson" else [written]:
                        json.loads(line)
                encoded = written.encode("utf-8", "surrogatepass")
                assert control_bytes(encoded, colour=colour) == [], (name, view)


def test_the_strategies_reach_hostile_values() -> None:
    """Guard against a strategy that quietly stopped generating what these tests are for."""
    seen: list[Snapshot] = []

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(snapshot=snapshots())
    def collect(snapshot: Snapshot) -> None:
        seen.append(snapshot)

    collect()
    names = [p.name for s in seen for p in s.processes if p.name]
    assert any(name and not name.isprintable() for name in names), names
