"""Keeping Python's cyclic garbage collector out of the way of a large snapshot.

A snapshot of 300,000 sockets is over a million small objects, none of them in a reference
cycle (reference counting frees them all). The cyclic collector would still walk them: the
young ones every few hundred allocations while they are built, and all of them again each time
they are promoted to an older generation -- about a third of the time of a large run, for
nothing. Sources and the analysis build their objects inside :func:`paused`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Generator


@contextlib.contextmanager
def paused() -> Generator[None, None, None]:
    """Switch the cyclic collector off for the block, and back on (if it was on) after it,
    also on an error.

    On the way out, everything the block allocated goes straight to the oldest generation
    (``gc.freeze()`` then ``gc.unfreeze()``): otherwise the first collections after it would
    walk every one of those objects twice, promoting them through the younger generations.
    They stay collectable by a full collection, as any old object. Skipped when something
    else froze objects on purpose (``gc.get_freeze_count()``), whose freeze we must not undo.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()
