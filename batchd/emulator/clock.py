"""Emulated time and identifiers.

Emulated time starts at the wall clock when the emulator starts, then runs ``speed`` times as
fast as real time, plus whatever ``advance()`` added. Identifiers are UUIDs, drawn from a seeded
generator when a seed is given so that a whole run can be replayed.
"""

from __future__ import annotations

import math
import random
import time
import uuid

MAX_TIME = 253_402_300_799.0  # 9999-12-31T23:59:59Z, the last second a datetime can show


class EmulatedClock:
    def __init__(self, speed: float, *, start: float | None = None) -> None:
        self.speed = speed
        self._start = time.time() if start is None else start
        self._mono0 = time.monotonic()
        self._offset_s = 0.0

    def now(self) -> float:
        return self._start + (time.monotonic() - self._mono0) * self.speed + self._offset_s

    def advance(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError("time only moves forward, by a finite number of seconds")
        if self.now() + seconds > MAX_TIME:
            raise ValueError("emulated time cannot go past 9999-12-31T23:59:59Z")
        self._offset_s += seconds

    def scaled(self, real_s: float) -> float:
        """Emulated seconds in ``real_s`` real seconds (ignoring ``advance``)."""
        return real_s * self.speed

    def real_delay_s(self, emulated_s: float) -> float:
        """How long to wait in real time for ``emulated_s`` to pass."""
        return max(0.0, emulated_s) / self.speed


class IdFactory:
    """UUID4-shaped ids; reproducible with a seed."""

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(f"ids:{seed}") if seed is not None else None

    def new(self) -> str:
        if self._rng is None:
            return str(uuid.uuid4())
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


def derived_uuid(digest: bytes) -> str:
    """A UUID4-shaped id derived from a digest (for byte-for-byte reproducible outputs);
    the same as ``str(uuid.UUID(bytes=digest[:16], version=4))``, without the object."""
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
