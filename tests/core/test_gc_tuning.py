"""tune_gc: what the services call at start-up to keep the collector off the per-job path."""

import gc
from collections.abc import Iterator

import pytest

from queue_core.gc_tuning import YOUNG_GENERATION_THRESHOLD, tune_gc


@pytest.fixture(name="restored_gc")
def fx_restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_collects_young_objects_less_often_and_freezes_what_start_up_made() -> None:
    _, middle, oldest = gc.get_threshold()

    tune_gc()

    assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, middle, oldest)
    assert gc.get_freeze_count() > 1000  # the modules imported so far, at least
    assert gc.isenabled()  # cycles are still collected
