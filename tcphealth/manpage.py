"""The man page, tcphealth(1), written from the same click commands and help texts that
``--help`` prints, so the two cannot disagree: ``python -m tcphealth.manpage > man/tcphealth.1``
(``make man``). The package installs man/tcphealth.1 into ``share/man/man1`` of its prefix (the
virtualenv under ``make run``), where ``man`` finds it through ``PATH``; tests/test_terminal.py
fails when the file is older than the help.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator

import click

from tcphealth import __version__
from tcphealth.cli import main

# What the help texts cannot say: the environment and the files, the exit codes.
ENVIRONMENT = (
    ("TCPHEALTH_PAGER", "The pager for output taller than the terminal; empty or cat: none."),
    ("PAGER", "The pager when TCPHEALTH_PAGER is not set (default: less, with LESS=FRX)."),
    ("NO_COLOR", "Any value: no colour (https://no-color.org), unless --color always."),
    ("COLUMNS, LINES", "The width and height to lay out for, instead of the terminal's."),
    ("TCPHEALTH_DEBUG", "Set: as --debug, print the traceback of an error."),
)
EXIT_STATUS = (
    ("0", "The report was made (check: no finding reaches --fail-on)."),
    ("1", "check: a warning reaches --fail-on."),
    ("2", "check: a critical finding."),
    ("3", "Input unreadable, or bad usage (never 2, which check gives to a critical finding)."),
    ("130", "Interrupted (Ctrl-C); --samples and snapshot --samples keep what they took."),
)
FILES = (("./tcphealth.toml, /etc/tcphealth.toml", "Thresholds, the first found (see config)."),)


def escape(text: str) -> str:
    """Text as roff reads it literally: backslashes doubled, hyphens that are not to break,
    and a leading dot or quote that would start a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.split("\n"):
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _paragraphs(help_text: str) -> Iterator[str]:
    """click's help as paragraphs: its own rewrapping of the docstring, joined again."""
    for paragraph in inspect.cleandoc(help_text).split("\n\n"):
        yield " ".join(paragraph.split())


def _options(command: click.Command, context: click.Context) -> Iterator[str]:
    for param in command.get_params(context):
        record = param.get_help_record(context)
        if record is None:
            continue
        names, help_text = record
        yield ".TP"
        yield f"\\fB{escape(names)}\\fR"
        yield escape(" ".join(help_text.split()))


def _usage(command: click.Command, context: click.Context) -> str:
    return " ".join(command.collect_usage_pieces(context))


def page(group: click.Group = main) -> str:
    """The whole man page as roff."""
    root = click.Context(group, info_name="tcphealth", **group.context_settings)
    lines = [
        f'.TH TCPHEALTH 1 "" "tcphealth {__version__}" "User Commands"',
        ".SH NAME",
        "tcphealth \\- " + escape(next(_paragraphs(group.help or ""))).rstrip("."),
        ".SH SYNOPSIS",
        f"\\fBtcphealth\\fR {escape(_usage(group, root))}",
        ".SH DESCRIPTION",
    ]
    for paragraph in list(_paragraphs(group.help or ""))[1:]:
        lines += [".PP", escape(paragraph)]
    lines += [".SH OPTIONS", *_options(group, root), ".SH COMMANDS"]
    for name, command in sorted(group.commands.items()):
        context = click.Context(command, info_name=name, parent=root, **command.context_settings)
        lines += [
            ".SS " + escape(f"tcphealth {name}"),
            f"\\fBtcphealth {escape(name)}\\fR {escape(_usage(command, context))}",
        ]
        for paragraph in _paragraphs(command.help or ""):
            lines += [".PP", escape(paragraph)]
        lines += [".PP", "Options:", ".RS", *_options(command, context), ".RE"]
    lines += [
        ".SH SHELL COMPLETION",
        ".PP",
        escape(
            "Commands, options, formats and state names complete in bash, zsh and fish. "
            "Load it for this shell, or add the line to the shell's start-up file:"
        ),
        ".PP",
        escape('bash: eval "$(tcphealth completion bash)"'),
        ".br",
        escape('zsh: eval "$(tcphealth completion zsh)"'),
        ".br",
        escape("fish: tcphealth completion fish | source"),
    ]
    for title, rows in (
        ("EXIT STATUS", EXIT_STATUS),
        ("ENVIRONMENT", ENVIRONMENT),
        ("FILES", FILES),
    ):
        lines.append(f".SH {title}")
        for term, meaning in rows:
            lines += [".TP", f"\\fB{escape(term)}\\fR", escape(meaning)]
    lines += [".SH SEE ALSO", "\\fBss\\fR(8), \\fBnetstat\\fR(8), \\fBtcp\\fR(7)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(page())
