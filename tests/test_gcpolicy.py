"""The GC policy freezes long-lived objects while runs poll, and lets go when they end."""

from __future__ import annotations

import asyncio
import gc

import pytest

from lamrunner.cli import gcpolicy


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(gcpolicy, "FREEZE_EVERY", 0.02)
    yield
    gc.unfreeze()


async def test_hold_freezes_periodically_and_unfreezes_at_the_end(quick):
    long_lived = [[i] for i in range(1000)]
    async with gcpolicy.hold():
        async with gcpolicy.hold():  # nested holders share one policy
            await asyncio.sleep(0.1)
            assert gc.get_freeze_count() >= len(long_lived)
        await asyncio.sleep(0.05)
        assert gcpolicy._task is not None
    assert gcpolicy._task is None
    assert gc.get_freeze_count() == 0


async def test_full_collections_still_happen(quick, monkeypatch):
    monkeypatch.setattr(gcpolicy, "FULL_EVERY", 0.05)
    collected: list[int] = []

    def watch(phase, info):
        if phase == "stop" and info["generation"] == 2:
            collected.append(1)

    gc.callbacks.append(watch)
    try:
        async with gcpolicy.hold():
            await asyncio.sleep(0.2)
    finally:
        gc.callbacks.remove(watch)
    assert collected
