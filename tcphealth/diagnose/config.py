"""Placeholder for the thresholds so the CLI runs on this branch."""

# TEMPORARY until branch diagnose is merged

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Thresholds:
    pass


def load_thresholds(path: Path | None, *, search: bool = True) -> tuple[Thresholds, Path | None]:
    return Thresholds(), None


def thresholds_as_toml(thresholds: Thresholds) -> str:
    return "[thresholds]\n"
