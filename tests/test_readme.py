"""The README documents every command, every option and every config key; this fails when one
is added to the code and not to the README."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from tcphealth.cli import main
from tcphealth.diagnose.config import Thresholds

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _commands(
    command: click.Command, path: tuple[str, ...] = ("tcphealth",)
) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path), command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(main))
OPTIONS = sorted(
    {
        (name, opt)
        for name, command in COMMANDS
        for param in command.params
        if isinstance(param, click.Option)
        for opt in (*param.opts, *param.secondary_opts)
    }
)


# Options count as documented only in the user's part of the README: "--strict" in the
# Development section's "mypy --strict" must not stand in for tcphealth's --strict.
USER_PART = README.split("## Development", 1)[0]


def _mentioned(word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", USER_PART) is not None


def test_the_first_lines_give_the_two_commands() -> None:
    assert README.startswith(
        "# tcphealth\n\n```\n"
        "make run     # sets up .venv and runs tcphealth on this host\n"
        "make test    # sets up .venv with the test extras and runs the whole suite\n"
        "```\n"
    )


def test_the_command_tree_is_what_we_think() -> None:
    assert [name for name, _ in COMMANDS] == [
        "tcphealth",
        "tcphealth check",
        "tcphealth completion",
        "tcphealth config",
        "tcphealth explain",
        "tcphealth metrics",
        "tcphealth serve",
        "tcphealth snapshot",
        "tcphealth sockets",
        "tcphealth watch",
    ]


@pytest.mark.parametrize(("name", "command"), COMMANDS)
def test_every_command_has_help_and_is_in_the_readme(name: str, command: click.Command) -> None:
    assert command.help, f"{name} has no help text"
    assert f"`{name}" in README, f"{name} is not in README.md"


@pytest.mark.parametrize(("command", "option"), OPTIONS)
def test_every_option_is_in_the_readme(command: str, option: str) -> None:
    assert _mentioned(option), f"{command} {option} is not in README.md"


@pytest.mark.parametrize("key", [f.name for f in dataclasses.fields(Thresholds)])
def test_every_config_key_is_in_the_readme(key: str) -> None:
    assert f"`{key}`" in README, f"config key {key} is not in README.md"


def test_every_exit_code_is_in_the_readme() -> None:
    table = README.split("## Exit codes", 1)[1].split("##", 1)[0]
    codes = [int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)]
    assert codes == [0, 1, 2, 3, 130]


def test_the_checker_fails_for_a_missing_option() -> None:
    """The README check itself must not pass vacuously."""
    assert not _mentioned("--no-such-option")
    assert _mentioned("--from") and _mentioned("-4")


def test_the_terminal_sample_is_real_output() -> None:
    from click.testing import CliRunner

    command = "$ tcphealth --from fixtures/close-wait-leak.json\n"
    sample = README.split(command, 1)[1].split("```", 1)[0]
    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "close-wait-leak.json"
    result = CliRunner().invoke(
        main, ["--from", str(fixture), "--format", "table"], env={"COLUMNS": "80"}
    )
    assert result.stdout == sample


def test_the_exit_codes_quoted_for_the_fixtures_are_real() -> None:
    from click.testing import CliRunner

    quoted = dict(re.findall(r"`([a-z0-9-]+)` ([0-3])\b", README.split("The fixtures and", 1)[1]))
    assert len(quoted) == 8
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    for name, code in quoted.items():
        result = CliRunner().invoke(main, ["check", "--from", str(fixtures / f"{name}.json")])
        assert result.exit_code == int(code), name


def test_the_script_samples_are_real_output() -> None:
    from click.testing import CliRunner

    root = Path(__file__).resolve().parent.parent
    command = (
        "$ tcphealth sockets --from fixtures/close-wait-leak.json --state close-wait --limit 2\n"
    )
    sample = README.split(command, 1)[1].split("```", 1)[0]
    args = ["sockets", "--from", str(root / "fixtures" / "close-wait-leak.json")]
    result = CliRunner().invoke(main, [*args, "--state", "close-wait", "--limit", "2"])
    assert result.stdout == sample
    grep = "$ tcphealth --from fixtures/close-wait-leak.json | grep CLOSE_WAIT\n"
    quoted = README.split(grep, 1)[1].split("$ ", 1)[0].splitlines()
    result = CliRunner().invoke(main, ["--from", str(root / "fixtures" / "close-wait-leak.json")])
    real = [line for line in result.stdout.splitlines() if "CLOSE_WAIT" in line]
    assert len(quoted) == len(real) == 2
    assert real[0].startswith(quoted[0].split(": ...", 1)[0])  # the README cuts it short
    assert quoted[1] == real[1]


def test_the_metrics_sample_is_real_output() -> None:
    from click.testing import CliRunner

    root = Path(__file__).resolve().parent.parent
    command = (
        "$ tcphealth metrics --from fixtures/close-wait-leak.json"
        " | grep -E '^tcphealth_(finding_sockets|findings)'\n"
    )
    quoted = README.split(command, 1)[1].split("```", 1)[0].splitlines()
    result = CliRunner().invoke(
        main, ["metrics", "--from", str(root / "fixtures" / "close-wait-leak.json")]
    )
    real = [
        line
        for line in result.stdout.splitlines()
        if re.match(r"^tcphealth_(finding_sockets|findings)", line)
    ]
    assert quoted == real
