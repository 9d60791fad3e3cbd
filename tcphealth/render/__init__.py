"""Renderers: each turns one :class:`~tcphealth.report.Report` into one output format.

``FORMATS`` maps a format name to its renderer, so the CLI chooses by name and never branches
on the format itself. Every renderer has the same signature and reads the same report.

Each renderer's module is imported the first time it renders: the table view pulls in rich
(a third of the start-up time of a run), which a piped or JSON run never needs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from tcphealth.render.environment import Environment
from tcphealth.render.options import RenderOptions, View
from tcphealth.report import Report

Renderer = Callable[[Report, RenderOptions, Environment], None]


def _imported_on_use(module_name: str) -> Renderer:
    """The ``render`` function of ``tcphealth.render.<module_name>``, imported when called."""

    def render(report: Report, options: RenderOptions, env: Environment) -> None:
        module = importlib.import_module(f"tcphealth.render.{module_name}")
        module.render(report, options, env)

    render.__qualname__ = render.__name__ = f"render_{module_name}"
    return render


FORMATS: dict[str, Renderer] = {
    name: _imported_on_use(name) for name in ("table", "plain", "json", "ndjson")
}


def render(report: Report, fmt: str, options: RenderOptions, env: Environment) -> None:
    FORMATS[fmt](report, options, env)


__all__ = ["FORMATS", "Environment", "RenderOptions", "Renderer", "View", "render"]
