"""A serving process tuned for latency: the garbage collector's start-up heap frozen, its pauses measured."""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


def tune_gc(freeze: bool, gen0_threshold: int) -> int:
    """Young collections every `gen0_threshold` allocations, and (with `freeze`) everything alive now, the imports'
    ~200k objects and the container's, moved where no collection looks again: a full collection then walks only
    what was made since. Returns how many objects were frozen."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
    if not freeze:
        return 0
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcPauses:
    """trdbot_gc_pause_seconds{generation}: how long each collection stopped the process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pauses = Histogram("trdbot_gc_pause_seconds", "Garbage collection pauses", ["generation"],
                                registry=registry, buckets=PAUSE_BUCKETS)
        self._children = [self.pauses.labels(generation=str(g)) for g in range(3)]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._children[info["generation"]].observe(time.perf_counter() - self._started)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
