"""Thresholds from TOML: defaults, search order, and errors that name the file and the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tcphealth.diagnose.config import (
    ConfigError,
    Thresholds,
    load_thresholds,
    parse_thresholds,
    threshold_help,
    thresholds_as_toml,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_when_no_file_and_no_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "tcphealth.toml", "[thresholds]\nclose_wait_warning = 3\n")
    thresholds, source = load_thresholds(None, search=False)
    assert thresholds == Thresholds()
    assert source is None


def test_explicit_file_overrides_only_the_keys_it_sets(tmp_path: Path) -> None:
    path = write(
        tmp_path / "x.toml", "[thresholds]\nclose_wait_warning = 3\nfd_warning_ratio = 0.5\n"
    )
    thresholds, source = load_thresholds(path)
    assert source == path
    assert thresholds.close_wait_warning == 3
    assert thresholds.fd_warning_ratio == 0.5
    assert thresholds.close_wait_critical == Thresholds().close_wait_critical


def test_search_finds_tcphealth_toml_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "tcphealth.toml", "[thresholds]\nsyn_recv_warning = 7\n")
    thresholds, source = load_thresholds(None)
    assert thresholds.syn_recv_warning == 7
    assert source == Path("tcphealth.toml")


def test_search_falls_back_to_etc_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tcphealth.diagnose.config as config

    monkeypatch.chdir(tmp_path)
    etc = write(tmp_path / "etc.toml", "[thresholds]\nclosing_warning = 4\n")
    monkeypatch.setattr(config, "SEARCH_PATHS", (Path("tcphealth.toml"), etc))
    thresholds, source = load_thresholds(None)
    assert (thresholds.closing_warning, source) == (4, etc)
    etc.unlink()
    assert load_thresholds(None) == (Thresholds(), None)


def test_integer_accepted_for_a_ratio_and_stored_as_float(tmp_path: Path) -> None:
    thresholds = parse_thresholds("[thresholds]\nfd_critical_ratio = 1\n", origin="t.toml")
    assert thresholds.fd_critical_ratio == 1.0
    assert isinstance(thresholds.fd_critical_ratio, float)


def test_empty_file_gives_defaults() -> None:
    assert parse_thresholds("", origin="t.toml") == Thresholds()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[thresholds]\nclose_wait_warnings = 3\n",
            "t.toml: thresholds.close_wait_warnings: unknown key",
        ),
        (
            "[thresholds]\nclose_wait_warning = '3'\n",
            "t.toml: thresholds.close_wait_warning: expected a number",
        ),
        (
            "[thresholds]\nclose_wait_warning = true\n",
            "t.toml: thresholds.close_wait_warning: expected a number",
        ),
        (
            "[thresholds]\nclose_wait_warning = 2.5\n",
            "t.toml: thresholds.close_wait_warning: expected a whole number",
        ),
        (
            "[thresholds]\nfd_warning_ratio = -0.1\n",
            "t.toml: thresholds.fd_warning_ratio: must be a ratio above 0 and at most 1000, "
            "got -0.1",
        ),
        (
            "[thresholds]\nsyn_recv_warning = 2000\n",
            "t.toml: thresholds.syn_recv_warning: "
            "syn_recv_warning (2000) is above syn_recv_critical (1024)",
        ),
        (
            "[thresholds]\nfd_critical_ratio = 0.5\n",
            "t.toml: thresholds.fd_critical_ratio: "
            "fd_warning_ratio (0.8) is above fd_critical_ratio (0.5)",
        ),
        ("[limits]\nx = 1\n", "t.toml: limits: unknown key"),
        ("thresholds = 3\n", "t.toml: thresholds: expected a table"),
        ("[thresholds\n", "t.toml: not valid TOML"),
    ],
)
def test_errors_name_the_file_and_the_key_on_one_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_thresholds(text, origin="t.toml")
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_missing_explicit_file_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read"):
        load_thresholds(missing)


def test_error_from_a_file_names_that_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", "[thresholds]\nclose_wait_critical = -1\n")
    with pytest.raises(ConfigError) as raised:
        load_thresholds(path)
    assert str(raised.value).startswith(
        f"{path}: thresholds.close_wait_critical: must be a count from 1 to 1,000,000,000"
    )


def test_thresholds_as_toml_round_trips_every_key() -> None:
    changed = dataclasses.replace(Thresholds(), close_wait_warning=1, fd_warning_ratio=0.25)
    text = thresholds_as_toml(changed)
    assert text.startswith("[thresholds]\n")
    assert "close_wait_warning = 1\n" in text
    assert "fd_warning_ratio = 0.25\n" in text
    assert parse_thresholds(text, origin="round-trip") == changed
    keys = [line for line in text.splitlines() if line and line[0].isalpha()]
    assert len(keys) == len(dataclasses.fields(Thresholds))


def test_every_warning_default_is_at_most_its_critical_default() -> None:
    # parse of the defaults runs the same ordering checks a user's file gets.
    assert parse_thresholds(thresholds_as_toml(Thresholds()), origin="defaults") == Thresholds()


def test_every_threshold_is_documented_and_the_comment_precedes_its_key() -> None:
    help_texts = threshold_help()
    assert list(help_texts) == [f.name for f in dataclasses.fields(Thresholds)]
    assert all(len(text) > 10 for text in help_texts.values())
    lines = thresholds_as_toml(Thresholds()).splitlines()
    index = lines.index("close_wait_warning = 10")
    assert lines[index - 1] == f"# {help_texts['close_wait_warning']}"
