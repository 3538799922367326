"""Plain numbers the server keeps for its metrics: a histogram of durations as bucket counts.

Counters are plain ints on the objects that count (the engine, the hub, the handler runner); a scrape
reads them (:mod:`tidings.server.metrics`), so counting costs an integer add, not a call into a
metrics library, on the paths that run once per message.
"""

from __future__ import annotations

from bisect import bisect_left

#: Upper bounds of the buckets, in seconds (Prometheus' defaults); the last bucket is +Inf.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class Histogram:
    """How many observations fell in each bucket of :data:`BUCKETS` (not cumulative; the last one is
    +Inf), and their sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.sum += value

    def values(self) -> list[float]:
        """The bucket counts then the sum, as one list (what a snapshot holds and adds up)."""
        return [*self.counts, self.sum]
