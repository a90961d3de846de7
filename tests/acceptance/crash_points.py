"""``batchd`` with one named crash point armed: the process dies (``os._exit(137)``, as abrupt
as SIGKILL) at an exact place, once. Test-only; the product has no crash hooks.

Run as ``python -m tests.acceptance.crash_points <point> <batchd arguments...>`` from the
repository root. The points are the instants reliability.md section 2.4 names, where a random
kill rarely lands:

- ``after-upload``: the input file is uploaded, the upload not yet recorded;
- ``after-create``: the provider job exists, its id not yet recorded;
- ``mid-result-write``: results.jsonl is written to its temp file, not yet renamed;
- ``after-finish``: the submission is committed DONE, its work folder not yet removed;
- ``mid-reason-write``: a rejected file's reason is in its temp file, not yet renamed;
- ``after-webhook``: the receiver answered 2xx, the delivery not yet recorded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

EXIT = 137


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT)


def _after(owner: Any, name: str) -> None:
    """Replace the coroutine method or function ``owner.name``: call it, then die."""
    original = getattr(owner, name)

    async def dying(*args: Any, **kwargs: Any) -> Any:
        await original(*args, **kwargs)
        _die()

    setattr(owner, name, dying)


def after_upload() -> None:
    from batchd.providers.mistral import MistralProvider

    _after(MistralProvider, "upload_file")


def after_create() -> None:
    from batchd.providers.mistral import MistralProvider

    _after(MistralProvider, "create_job")


def after_finish() -> None:
    from batchd.store.sqlite import SqliteJobStore

    _after(SqliteJobStore, "finish_submission")


def after_webhook() -> None:
    import batchd.notifier

    _after(batchd.notifier, "deliver")


def mid_result_write() -> None:
    import batchd.results

    original = batchd.results.merge

    def dying(*args: Any, **kwargs: Any) -> Any:
        original(*args, **kwargs)
        _die()

    batchd.results.merge = dying


def mid_reason_write() -> None:
    from batchd.safe_folder import Folder

    original = Folder.write

    def dying(self: Folder, name: str, data: bytes, *, mode: int) -> None:
        if not name.endswith(".reason.txt"):
            original(self, name, data, mode=mode)
            return
        with self.writer(name, mode=mode) as handle:
            handle.write(data)
            handle.flush()
            _die()

    Folder.write = dying  # type: ignore[method-assign]


POINTS: dict[str, Callable[[], None]] = {
    "after-upload": after_upload,
    "after-create": after_create,
    "mid-result-write": mid_result_write,
    "after-finish": after_finish,
    "mid-reason-write": mid_reason_write,
    "after-webhook": after_webhook,
}


def main(argv: list[str]) -> int:
    POINTS[argv[0]]()
    from batchd.cli import run

    return run(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
