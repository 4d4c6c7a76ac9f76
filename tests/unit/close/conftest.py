"""Fixtures for the close unit tests: a harness factory over the in-process sandboxes."""

from __future__ import annotations

import pytest

from tests.unit.close.support import Harness


@pytest.fixture
def make_harness(tmp_path, fake_redis):
    made: list[Harness] = []

    def build(**options) -> Harness:
        directory = tmp_path / f"h{len(made)}"
        directory.mkdir()
        harness = Harness(directory, fake_redis, **options)
        made.append(harness)
        return harness

    yield build
    for harness in made:
        harness.close_all()


@pytest.fixture
def harness(make_harness) -> Harness:
    return make_harness()
