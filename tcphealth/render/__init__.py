"""Renderers: each turns what a command made -- a :class:`~tcphealth.report.Report`, the
explanation of a state, the thresholds in effect -- into one output format.

``OUTPUT_FORMATS`` is the one registry of formats: each names the module that renders a
report and the one that renders the other documents, so the CLI chooses by name and never
branches on the format itself. ``FORMATS`` is its report renderers by name; every renderer of a
kind has the same signature and reads the same value.

Each renderer's module is imported the first time it renders: the table view pulls in rich
(a third of the start-up time of a run), which a piped or JSON run never needs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tcphealth.model import CodeEntry
from tcphealth.render.environment import Environment
from tcphealth.render.options import RenderOptions, View
from tcphealth.report import Report, ThresholdsReport
from tcphealth.states import StateExplanation

Renderer = Callable[[Report, RenderOptions, Environment], None]


def _imported_on_use(module_name: str, function: str = "render") -> Callable[..., None]:
    """``tcphealth.render.<module_name>.<function>``, imported when called."""

    def call(*args: Any) -> None:
        module = importlib.import_module(f"tcphealth.render.{module_name}")
        getattr(module, function)(*args)

    call.__qualname__ = call.__name__ = f"{function}_{module_name}"
    return call


@dataclass(frozen=True)
class OutputFormat:
    """One ``--format``: the module that renders a report, and the one that renders the
    explanation of a state, the thresholds and the catalogue of finding codes (prose for a
    person, or JSON)."""

    name: str
    report_module: str
    document_module: str

    @property
    def report(self) -> Renderer:
        return _imported_on_use(self.report_module)

    def explanation(self, shown: StateExplanation, env: Environment) -> None:
        _imported_on_use(self.document_module, "explanation")(shown, env)

    def thresholds(self, shown: ThresholdsReport, env: Environment) -> None:
        _imported_on_use(self.document_module, "thresholds")(shown, env)

    def codes(self, shown: tuple[CodeEntry, ...], env: Environment) -> None:
        _imported_on_use(self.document_module, "codes")(shown, env)


OUTPUT_FORMATS: dict[str, OutputFormat] = {
    output.name: output
    for output in (
        OutputFormat("table", "table", "prose"),
        OutputFormat("plain", "plain", "prose"),
        OutputFormat("json", "json", "json"),
        OutputFormat("ndjson", "ndjson", "ndjson"),
    )
}
FORMATS: dict[str, Renderer] = {name: output.report for name, output in OUTPUT_FORMATS.items()}


def output_format(fmt: str | None, env: Environment) -> OutputFormat:
    """The format asked for, else the environment's default (a table on a terminal)."""
    return OUTPUT_FORMATS[fmt or env.default_format]


def render(report: Report, fmt: str, options: RenderOptions, env: Environment) -> None:
    FORMATS[fmt](report, options, env)


__all__ = [
    "FORMATS",
    "OUTPUT_FORMATS",
    "Environment",
    "OutputFormat",
    "RenderOptions",
    "Renderer",
    "View",
    "output_format",
    "render",
]
