"""One instance per running event loop."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from core.loops import per_loop


class Thing:
    pass


def test_per_loop_makes_one_instance_per_loop():
    made: list[Thing] = []

    @per_loop
    def thing() -> Thing:
        """The loop's thing."""
        made.append(Thing())
        return made[-1]

    async def twice() -> tuple[Thing, Thing]:
        return thing(), thing()

    first, same = asyncio.run(twice())
    assert first is same
    other, _ = asyncio.run(twice())
    assert other is not first
    assert made == [first, other]
    assert thing.__name__ == "thing"
    assert thing.__doc__ == "The loop's thing."


def test_per_loop_keeps_neither_a_finished_loop_nor_its_instance_alive():
    @per_loop
    def thing() -> Thing:
        return Thing()

    async def get() -> Thing:
        return thing()

    loop = asyncio.new_event_loop()
    made = weakref.ref(loop.run_until_complete(get()))
    finished = weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert finished() is None
    assert made() is None


def test_per_loop_needs_a_running_loop():
    @per_loop
    def thing() -> Thing:
        return Thing()

    with pytest.raises(RuntimeError):
        thing()
