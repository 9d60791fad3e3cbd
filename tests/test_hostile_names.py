"""Names from the host or from a stranger's file are shown inert in every format.

What each format shows (README, "Hostile names"): the text formats (table, plain, the Nagios
line, stderr) spell every control or invisible character as a Python-style escape -- ESC as
``\\x1b``, a newline as ``\\n``, the C1 control U+009B as ``\\x9b``, a bidi override as
``\\u202e`` -- and never apply markup, so ``[bold red]x[/]`` is printed as those characters.
Plain also escapes backslashes and quotes inside its quoted values. JSON and NDJSON carry the
name itself, \\u-escaped (ASCII only), so a parser gets back exactly the string tcphealth read.
A byte of /proc that is not UTF-8 is read as the four characters ``\\xff`` (procfs and psutil
alike), so JSON stays valid Unicode for every parser.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tcphealth.cli import main
from tcphealth.diagnose import config as diagnose_config
from tcphealth.model import Snapshot
from tcphealth.pipeline import analyse
from tcphealth.render import Environment, RenderOptions, View, render
from tcphealth.render.nagios import status_line
from tcphealth.render.text import inert
from tcphealth.sources.snapshot_file import snapshot_to_json
from tests.inertness import SGR, control_bytes
from tests.scenario_helpers import output, proc, snap, sock, string_env

NAMES = {
    66: "\x1b[31mred\x1b[0m",
    67: "\x1b]0;pwned\x07",
    68: "[bold red]x[/]",
    69: "a\nCRITICAL fake\tline\r",
    70: "c1\x9b2J\x7f",
    71: "\u202egnp.exe",
    72: "L" * 256,  # as long as a name is kept (bounds.MAX_NAME_CHARS): given back whole
}
SHOWN = {  # how the table shows each (plain quotes them and doubles backslashes)
    66: "\\x1b[31mred\\x1b[0m",
    67: "\\x1b]0;pwned\\x07",
    68: "[bold red]x[/]",
    69: "a\\nCRITICAL fake\\tline\\r",
    70: "c1\\x9b2J\\x7f",
    71: "\\u202egnp.exe",
    72: "L" * 256,
}


@pytest.fixture(autouse=True)
def _no_config_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diagnose_config, "SEARCH_PATHS", (), raising=False)


# --- the one sanitising function ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("java", "java"),
        ("ngïnx 日本", "ngïnx 日本"),  # printable non-ASCII stays as it is
        ("e\u0301", "e\u0301"),  # a combining accent is printable
        ("\x1b[2J", "\\x1b[2J"),
        ("\x1b]0;t\x07", "\\x1b]0;t\\x07"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("\x00\x7f", "\\x00\\x7f"),
        ("\x9b31m", "\\x9b31m"),  # C1 CSI, which some terminals obey
        ("\u202eevil", "\\u202eevil"),  # bidi override
        ("a\u200bb", "a\\u200bb"),  # zero-width space
        ("a\u2028b", "a\\u2028b"),  # line separator
        ("\udcff", "\\udcff"),  # a lone surrogate from a file
        ("\U000e0041", "\\U000e0041"),  # a tag character
        ("[bold red]x[/]", "[bold red]x[/]"),  # markup is the renderers' business
        ("", ""),
    ],
)
def test_inert_spells_every_control_or_invisible_character(raw: str, shown: str) -> None:
    assert inert(raw) == shown
    assert inert(shown) == shown or "\\" in shown  # printable output is a fixed point


def test_inert_output_is_always_printable() -> None:
    every_char = "".join(chr(code) for code in range(0x3000)) + "\udc80\U0010ffff"
    assert inert(every_char).isprintable()


# --- a snapshot file full of hostile names, through the CLI -----------------------------------


def hostile_snapshot() -> Snapshot:
    processes = [
        proc(pid, name, user=f"u\x1b[1m{pid}", cmdline=(name, "--flag", "[link=x]y\n"))
        for pid, name in NAMES.items()
    ]
    sockets = [sock("LISTEN", f"0.0.0.0:{8000 + pid}", "0.0.0.0:0", pid) for pid in NAMES]
    # Enough unread CLOSE_WAIT for a finding whose summary names the process.
    sockets += [
        sock("CLOSE_WAIT", f"10.0.0.5:{40000 + n}", "10.0.0.9:5432", 66, recv_queue=1)
        for n in range(60)
    ]
    base = snap(sockets, processes)
    return Snapshot(
        host=base.host.__class__(
            hostname="host\x1b[2J",
            kernel="6.1\n[red]",
            taken_at=base.host.taken_at,
            source="procfs\x07",
            privileged=True,
            platform="linux",
        ),
        attribution=base.attribution,
        processes=base.processes,
        sockets=base.sockets,
        notes=("a note \x1b[2J with an escape",),
    )


@pytest.fixture
def hostile_file(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.json"
    path.write_text(snapshot_to_json(hostile_snapshot()), encoding="utf-8")
    return path


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": "120"})


def test_text_formats_are_inert_byte_by_byte(hostile_file: Path) -> None:
    for args in (
        ["--all", "--sockets", "--format", "table"],
        ["--all", "--sockets", "--format", "plain"],
        ["sockets", "--format", "table"],
        ["sockets", "--format", "plain"],
        ["check", "--format", "plain"],
        ["check", "--nagios"],
    ):
        command, options = (args[:1], args[1:]) if args[0] in ("sockets", "check") else ([], args)
        result = run(*command, "--from", hostile_file, *options)
        assert result.exit_code in (0, 1, 2), result.stderr
        for stream in (result.stdout_bytes, result.stderr_bytes):
            assert control_bytes(stream) == [], args
    table = run("--from", hostile_file, "--all", "--format", "table").stdout
    for pid, shown in SHOWN.items():
        if pid != 72:
            assert f"pid {pid} {shown}  user u\\x1b[1m{pid}" in table  # the title
    assert "\n" + "L" * 100 in table  # the 256 characters, wrapped, never an escape
    assert "host\\x1b[2J  kernel 6.1\\n[red]  source procfs\\x07" in table
    assert "u\\x1b[1m66" in table and "[link=x]y\\n" in table


def test_plain_is_one_line_per_record_and_quotes_every_hostile_value(hostile_file: Path) -> None:
    lines = run("sockets", "--from", hostile_file, "--format", "plain").stdout.splitlines()
    records = run("sockets", "--from", hostile_file, "--format", "ndjson").stdout.splitlines()
    assert len(lines) == len(records) == len(hostile_snapshot().sockets)
    listeners = {line.split(" local=0.0.0.0:")[1].split()[0]: line for line in lines[:7]}
    assert listeners["8066"].endswith(
        ' pid=66 process="\\x1b[31mred\\x1b[0m" uid=- inode=1001 owner=fd truncated=no age_s=- '
        "netns=- container=- pod=-"
    )
    assert ' process="[bold red]x[/]" ' in listeners["8068"]
    assert ' process="a\\nCRITICAL fake\\tline\\r" ' in listeners["8069"]
    assert ' process="c1\\x9b2J\\x7f" ' in listeners["8070"]
    report = run("--from", hostile_file, "--format", "plain").stdout.splitlines()
    assert report[0].startswith("WARNING code=close-wait-not-reading ")
    assert ' process="\\x1b[31mred\\x1b[0m" ' in report[0]
    assert "holds 60 connections in CLOSE_WAIT" in report[0]


def test_json_and_ndjson_parse_and_give_back_the_names_exactly(hostile_file: Path) -> None:
    for args in (["--all", "--sockets"], ["sockets"]):
        command, options = (args, []) if args == ["sockets"] else ([], args)
        document_text = run(*command, "--from", hostile_file, *options, "--format", "json").stdout
        assert document_text.isascii()  # every non-ASCII character is \u-escaped
        document = json.loads(document_text)
        process_of = {s["pids"][0]: s["process"] for s in document["sockets"]}
        assert process_of == NAMES
        if args != ["sockets"]:
            names = {p["pid"]: (p["name"], p["cmdline"]) for p in document["processes"]}
            assert names == {
                pid: (name, [name, "--flag", "[link=x]y\n"]) for pid, name in NAMES.items()
            }
            assert document["host"]["hostname"] == "host\x1b[2J"
        ndjson = run(*command, "--from", hostile_file, *options, "--format", "ndjson").stdout
        records = [json.loads(line) for line in ndjson.splitlines()]
        assert ndjson.isascii()
        assert {r["pids"][0]: r["process"] for r in records if r["type"] == "socket"} == NAMES


def test_the_table_in_colour_only_adds_its_own_sgr_sequences() -> None:
    report = analyse(hostile_snapshot())
    options = RenderOptions(view=View.REPORT, show_all=True, with_sockets=True)
    plain_env, colour_env = string_env(120, tty=True), string_env(120, color=True, tty=True)
    render(report, "table", options, plain_env)
    render(report, "table", options, colour_env)
    coloured = output(colour_env).encode()
    assert SGR.search(coloured)  # it is colour
    assert control_bytes(coloured, colour=True) == []
    # The same text; only trailing blanks differ, where a style ends after them.
    uncoloured = [line.rstrip() for line in SGR.sub(b"", coloured).decode().splitlines()]
    assert uncoloured == output(plain_env).splitlines()
    nagios = status_line(report)
    assert control_bytes(nagios.encode()) == [] and "\n" not in nagios


def test_stderr_notes_are_inert(hostile_file: Path) -> None:
    result = run("--from", hostile_file)
    assert result.stderr == "tcphealth: note: a note \\x1b[2J with an escape\n"


# --- an ss paste ------------------------------------------------------------------------------

SS_PASTE = (
    "State  Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n"
    'LISTEN 0 128 127.0.0.1:22 0.0.0.0:* users:(("evil\x1b[2J\x1b]0;x\x07",pid=1,fd=3))\n'
    'LISTEN 0 128 127.0.0.1:23 0.0.0.0:* users:(("[bold red]y[/]\x9b",pid=2,fd=3))\n'
    'CLOSE-WAIT 1 0 127.0.0.1:22 127.0.0.1:5555 users:(("a\tb c",pid=3,fd=4),("d",pid=4,fd=5))\n'
)


def test_an_ss_paste_with_hostile_process_names(tmp_path: Path) -> None:
    paste = tmp_path / "ss.txt"
    paste.write_bytes(
        SS_PASTE.encode("utf-8") + b"LISTEN 0 1 127.0.0.1:24 0.0.0.0:* "
        b'users:(("bad\xff\xfe",pid=5,fd=3))\n'
    )
    for fmt in ("table", "plain"):
        result = run("sockets", "--from", paste, "--format", fmt)
        assert result.exit_code == 0, result.stderr
        assert control_bytes(result.stdout_bytes) == []
    lines = run("sockets", "--from", paste, "--format", "plain").stdout.splitlines()
    assert [line.split(" process=")[1].split(" uid=")[0] for line in lines] == [
        '"evil\\x1b[2J\\x1b]0;x\\x07"',
        '"[bold red]y[/]\\x9b"',
        '"a\\tb c,d"',
        "bad\ufffd\ufffd",  # not UTF-8 in a paste: the replacement character, printable
    ]
    table = run("sockets", "--from", paste, "--format", "table").stdout
    assert "1 evil\\x1b[2J\\x1b]0;x\\x07" in table and "2 [bold red]y[/]\\x9b" in table
    records = run("sockets", "--from", paste, "--format", "ndjson").stdout.splitlines()
    assert [json.loads(r)["process"] for r in records] == [
        "evil\x1b[2J\x1b]0;x\x07",
        "[bold red]y[/]\x9b",
        "a\tb c,d",
        "bad\ufffd\ufffd",
    ]


def test_render_to_a_real_stream_writes_no_control_bytes() -> None:
    """The renderers write str; encoded as a terminal would, still nothing but text."""
    report = analyse(hostile_snapshot())
    for fmt in ("table", "plain", "json", "ndjson"):
        stream = io.StringIO()
        env = Environment(stdout=stream, stderr=io.StringIO(), width=100)
        render(report, fmt, RenderOptions(view=View.REPORT, with_sockets=True), env)
        assert control_bytes(stream.getvalue().encode("utf-8")) == [], fmt
