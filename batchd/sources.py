"""Where work comes in: the ``Source`` seam.

The runtime holds a list of sources (``wiring.Runtime.sources``); the drop folder
(``intake.Intake``: each route's ``<spool>/inbox/``) is the first and today the only one. A
source is a loop (``run_once``/``wait``, run by ``loops.run_loop`` with its own heartbeat) that
turns what arrives into submissions in the store and wakes the submitter; the daemon starts it,
runs one pass before it reports ready (so that half-done claims are finished and what waited
during a downtime is taken), hands it each reloaded configuration, and closes it on the way out.

Adding a source: a module with a class satisfying ``Source``, built in ``wiring.build_runtime``
and appended to ``sources``, with its own unit tests driven by ``run_once()``.
"""

from __future__ import annotations

from typing import Protocol

from batchd.config import Settings
from batchd.loops import Loop
from batchd.spool import Modes


class Source(Loop, Protocol):
    def start(self) -> None:
        """Begin watching (before the first pass)."""
        ...

    def close(self) -> None:
        """Stop watching; in-flight submissions stay in the store."""
        ...

    def apply(self, settings: Settings, modes: Modes) -> None:
        """Take a reloaded configuration; in-flight submissions keep their own settings."""
        ...
