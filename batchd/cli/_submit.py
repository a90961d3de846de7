"""``batchd submit``'s steps around the copy: the duplicate check the daemon would make, the
progress bar while validating, and ``--wait`` with an exit code by outcome.

Exit codes of ``batchd submit`` (also in ``--help`` and the README):

* 0: copied (without ``--wait``), or every request answered without an error;
* 4: every request answered, some with an error (``completed_with_errors``);
* 5: some requests have no answer (``partial``);
* 6: ``failed``;
* 7: rejected (invalid, or a duplicate: refused before the copy when batchd already knows the
  content), or the file vanished before it was claimed;
* 8: ``cancelled``;
* 9: ``--wait-timeout`` passed first (the submission carries on);
* 1, 2, 3 as for every command.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from batchd.cli._output import console, is_terminal, note
from batchd.models import Submission, SubmissionState

if TYPE_CHECKING:
    from batchd.config import Settings
    from batchd.store.base import JobStore

EXIT_BY_OUTCOME: Final = {
    "succeeded": 0,
    "completed_with_errors": 4,
    "partial": 5,
    "failed": 6,
    "cancelled": 8,
}
EXIT_REJECTED: Final = 7
EXIT_WAIT_TIMEOUT: Final = 9
EXIT_UNKNOWN_OUTCOME: Final = 1
FINISHED: Final = frozenset(
    {SubmissionState.DONE, SubmissionState.REJECTED, SubmissionState.ABANDONED}
)
POLL_S: Final = 1.0

EXIT_HELP = (
    "exit codes: 0 copied (or, with --wait, every request answered without an error); "
    "4 answered, some with an error; 5 partial (some requests unanswered); 6 failed; "
    "7 rejected (invalid, or a duplicate of content batchd already ran); 8 cancelled; "
    "9 --wait-timeout passed first; 1 error; 2 usage; 3 configuration"
)


def exit_code(sub: Submission) -> int:
    """The exit code for a finished submission."""
    if sub.state is not SubmissionState.DONE:
        return EXIT_REJECTED
    outcome = sub.outcome.value if sub.outcome else ""
    return EXIT_BY_OUTCOME.get(outcome, EXIT_UNKNOWN_OUTCOME)


def view(sub: Submission) -> dict[str, Any]:
    return {
        "submission_id": sub.id,
        "state": sub.state.value,
        "outcome": sub.outcome.value if sub.outcome else None,
        "results_dir": sub.results_dir,
        "reason": sub.reason,
    }


# ------------------------------------------------------------------ the store, read-only
def unreadable(settings: Settings) -> tuple[str, bool] | None:
    """Why this user cannot see the daemon's database, and whether it never will (denied);
    None: it can. Under systemd the data folder is private to the daemon's user: a member of
    the spool's group cannot read it."""
    from batchd.errors import StoreError
    from batchd.store.registry import store_exists

    url = settings.store.url
    try:
        if store_exists(url):
            return None
    except (OSError, StoreError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"this user cannot read the database {url} ({reason})", True
    return (
        f"there is no database at {url} (is this the daemon's configuration and data_dir?)",
        False,
    )


async def _with_store(settings: Settings, action: Callable[[JobStore], Any]) -> Any:
    """``action(store)``, or None when there is no database yet (or it cannot be read)."""
    from batchd.store.registry import StoreOptions, make_store

    if await asyncio.to_thread(unreadable, settings) is not None:
        return None
    store = make_store(settings.store.url, StoreOptions(migrate=False))
    await store.open()
    try:
        return await action(store)
    finally:
        await store.close()


def earlier_duplicate(settings: Settings, route: str, sha256: str) -> Submission | None:
    """The submission the daemon would name when refusing this content as a duplicate."""
    from batchd.errors import StoreError

    async def find(store: JobStore) -> Submission | None:
        return await store.find_duplicate(route, sha256)

    problem = unreadable(settings)
    if problem is not None:  # the daemon still refuses a duplicate when it claims the file
        note(f"duplicate check skipped: {problem[0]}")
        return None
    try:
        found: Submission | None = asyncio.run(_with_store(settings, find))
    except StoreError as exc:  # e.g. a daemon not yet migrated: the daemon will check
        note(f"duplicate check skipped: {exc}")
        return None
    return found


async def _newest(store: JobStore, route: str, name: str, since: float) -> Submission | None:
    for sub in await store.list_submissions(route=route, limit=100):
        if sub.name == name and sub.created_at >= since:
            return sub
    return None


async def _progress(store: JobStore, sub: Submission) -> dict[str, int]:
    from batchd.cli._views import progress

    return progress(await store.jobs_for_submission(sub.id))


def wait(
    settings: Settings, route: str, name: str, since: float, timeout_s: float | None
) -> Submission | None:
    """Poll until the submission of ``name`` made after ``since`` has finished (None: the
    timeout passed first). On a terminal, a progress bar on stderr."""
    from batchd.errors import BatchdError

    problem = unreadable(settings)
    if problem is not None and problem[1]:
        raise BatchdError(f"cannot wait: {problem[0]}; {name} was submitted and carries on")
    if problem is not None:
        note(f"waiting, but {problem[0]}")
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with _bar(name) as show:

        async def poll() -> Submission | None:
            while deadline is None or time.monotonic() < deadline:
                found = await _with_store(settings, lambda s: _step(s, route, name, since, show))
                if found is not None and found.state in FINISHED:
                    return found  # type: ignore[no-any-return]
                await asyncio.sleep(POLL_S)
            return None

        return asyncio.run(poll())


async def _step(
    store: JobStore, route: str, name: str, since: float, show: Callable[[str, int, int], None]
) -> Submission | None:
    sub = await _newest(store, route, name, since)
    if sub is not None:
        figures = await _progress(store, sub)
        state = f"{sub.state.value}, {figures['failed']} failed" if figures["requests"] else ""
        show(state or sub.state.value, figures["completed"], figures["requests"])
    return sub


@contextmanager
def validation_bar(size_bytes: int, name: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr (terminal only) fed with bytes read so far."""
    import sys

    if not is_terminal(sys.stderr):
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("validating {task.description}"), BarColumn(), DownloadColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console(stderr=True)) as bar:
        task = bar.add_task(name, total=size_bytes)
        yield lambda done: bar.update(task, completed=done)
        bar.update(task, completed=size_bytes)


@contextmanager
def _bar(name: str) -> Iterator[Callable[[str, int, int], None]]:
    import sys

    if not is_terminal(sys.stderr):
        yield lambda _state, _done, _total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    state = TextColumn("{task.fields[state]}")
    with Progress(*columns, state, console=console(stderr=True)) as bar:
        task = bar.add_task(name, total=None, state="waiting for the daemon")

        def show(state: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None, state=state)

        yield show
