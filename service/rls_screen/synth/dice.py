"""The generator's random draws: ``random.Random`` plus the three shapes of draw it uses.

Every stream is keyed by a string (``rls-screen-synth/1/<seed>/<index>`` for a patient's labs), so it
is the same in any process and under any ``PYTHONHASHSEED``. Never the global ``random``.
"""

from __future__ import annotations

import random


class Dice(random.Random):
    """A seeded stream; only ever called in a fixed order, so the output is reproducible."""

    def draw(self, low: float, high: float) -> float:
        """Around the middle of [low, high] with noise, never outside it (the bounds keep margins)."""
        return float(min(max(self.gauss((low + high) / 2, (high - low) / 4), low), high))

    def chance(self, probability: float) -> bool:
        return self.random() < probability

    def integer(self, low: int, high: int) -> int:
        """Uniform integer in [low, high]; cheaper than ``randint`` (this is the hot path)."""
        return low + int(self.random() * (high - low + 1))
