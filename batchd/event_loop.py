"""The event loop ``batchd run`` runs on: uvloop's (libuv), not asyncio's default one.

Measured on the intake benchmark (tests/benchmarks, issue 22): a thread hand-off costs 38 us of
CPU instead of 57, an upload 0.65 ms instead of 0.79, and the daemon's CPU per 100-line file
drops by about 7 %. The daemon hands work to threads (the SQLite writer, aiosqlite's reader,
file work) a dozen times per file, so this is where the loop's own cost shows. Only the daemon
uses it: commands and tests run on asyncio's loop, and nothing in batchd depends on which.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a uvloop event loop."""
    return uvloop.run(main)
