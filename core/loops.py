"""One instance per running event loop.

Daphne runs one loop per process; tests (and ``asyncio.run``) start many.
Anything bound to a loop (a redis-py asyncio connection pool, tasks,
futures, locks) must not be handed to another loop, and must not keep a
finished loop alive: instances are keyed weakly by their loop.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def per_loop(factory: Callable[[], T]) -> Callable[[], T]:
    """Wrap ``factory`` so that calling it from a coroutine returns the
    running loop's instance, made by ``factory`` on the loop's first call.
    Raises RuntimeError outside a running loop."""
    instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    @functools.wraps(factory)
    def instance() -> T:
        loop = asyncio.get_running_loop()
        found = instances.get(loop)
        if found is None:
            found = instances[loop] = factory()
        return found

    return instance
