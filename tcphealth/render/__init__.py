"""Renderers: each turns one :class:`~tcphealth.report.Report` into one output format.

``FORMATS`` maps a format name to its renderer, so the CLI chooses by name and never branches
on the format itself. Every renderer has the same signature and reads the same report.
"""

from __future__ import annotations

from collections.abc import Callable

from tcphealth.render import json, ndjson, plain, table
from tcphealth.render.environment import Environment
from tcphealth.render.options import RenderOptions, View
from tcphealth.report import Report

Renderer = Callable[[Report, RenderOptions, Environment], None]

FORMATS: dict[str, Renderer] = {
    "table": table.render,
    "plain": plain.render,
    "json": json.render,
    "ndjson": ndjson.render,
}


def render(report: Report, fmt: str, options: RenderOptions, env: Environment) -> None:
    FORMATS[fmt](report, options, env)


__all__ = ["FORMATS", "Environment", "RenderOptions", "Renderer", "View", "render"]
