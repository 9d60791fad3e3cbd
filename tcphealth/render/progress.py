"""Progress on stderr while a run takes its samples (``--samples``, ``snapshot --samples``):
a bar with the sample number and the time left, drawn only when stderr is a terminal and
gone once the samples are in, so the report that follows starts on a clean screen. Into a
pipe or a file nothing is written: a log must not fill with redraws.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from tcphealth.render.environment import Environment


class _TimeLeft(ProgressColumn):
    """Seconds until the last sample is due: known from the interval, not guessed from the
    speed so far (rich's own estimate needs many steps to settle)."""

    def render(self, task: Task) -> Text:
        due = task.fields.get("due")
        if not isinstance(due, float):
            return Text("")
        left = max(0.0, due - time.monotonic())
        return Text(f"{left:.0f} s left", style="dim")


def _stderr_console(env: Environment) -> Console:
    return Console(
        file=env.stderr,
        width=env.width,
        color_system="auto" if env.color else None,
        no_color=not env.color,
        markup=False,
        highlight=False,
    )


# A look at the host (or the reading of a file) that has not ended after this many seconds
# gets a spinner; a quick one (nearly all) draws nothing.
SLOW_AFTER = 1.0


class SlowWork:
    """``with SlowWork(env, "reading the sockets"): ...``: a spinner with the time elapsed on
    stderr, from :data:`SLOW_AFTER` seconds on, if the work has not ended by then; nothing
    unless stderr is a terminal. ``SlowWork(...)(number)`` is accepted and ignored, so it
    stands in for :class:`SampleProgress` where there is one sample."""

    def __init__(self, env: Environment, what: str, after: float = SLOW_AFTER) -> None:
        self._lock = threading.Lock()
        self._started = self._ended = False
        self._progress: Progress | None = None
        self._timer: threading.Timer | None = None
        if env.stderr_isatty:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn(what),
                TimeElapsedColumn(),
                console=_stderr_console(env),
                transient=True,
                refresh_per_second=4,
            )
            self._progress.add_task(what, total=None)
            self._timer = threading.Timer(after, self._start)
            self._timer.daemon = True

    def _start(self) -> None:
        with self._lock:
            if not self._ended and self._progress is not None:
                self._progress.start()
                self._started = True

    def __enter__(self) -> SlowWork:
        if self._timer is not None:
            self._timer.start()
        return self

    def __call__(self, number: int) -> None:
        pass

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._ended = True
            if self._started and self._progress is not None:
                self._progress.stop()


class SampleProgress:
    """``with SampleProgress(env, 5, 2.0) as progress: ... progress(number)`` after each
    sample. Draws nothing unless stderr is a terminal and there is more than one sample."""

    def __init__(self, env: Environment, planned: int, interval: float, what: str) -> None:
        self.planned, self.interval = planned, interval
        self._progress: Progress | None = None
        self._task = None
        if env.stderr_isatty and planned > 1:
            console = _stderr_console(env)
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                TextColumn("sample {task.completed:.0f}/{task.total:.0f}"),
                _TimeLeft(),
                console=console,
                transient=True,
                refresh_per_second=4,
            )
            self._task = self._progress.add_task(
                what,
                total=planned,
                due=time.monotonic() + (planned - 1) * interval,
            )

    def __enter__(self) -> SampleProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __call__(self, number: int) -> None:
        """Sample ``number`` (from 1) has been taken."""
        if self._progress is None or self._task is None:
            return
        due = time.monotonic() + (self.planned - number) * self.interval
        self._progress.update(self._task, completed=number, due=due)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
