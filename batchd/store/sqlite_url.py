"""The ``sqlite`` store kind: ``sqlite:///<path>`` names one SQLite file (``SqliteJobStore``).

As in SQLAlchemy, the path follows the third slash: ``sqlite:////var/lib/batchd/batchd.sqlite3``
is absolute; a relative path (``sqlite:///batchd.sqlite3``) is anchored at ``daemon.data_dir``
when the configuration is loaded. The path is taken as written (no %-decoding). Importing this
module does not load aiosqlite: ``make`` does.
"""

from __future__ import annotations

from pathlib import Path

from batchd.store.base import JobStore
from batchd.store.registry import StoreOptions

PREFIX = "sqlite://"


def url_path(url: str) -> Path:
    """The file a ``sqlite:///...`` URL names (relative when the URL's path is)."""
    return Path(url.split("://", 1)[1].removeprefix("/"))


class SqliteKind:
    def anchored(self, url: str, data_dir: Path) -> str:
        rest = url.split("://", 1)[1]
        if not rest.startswith("/") or not rest.strip("/").strip() or "\0" in rest:
            return url  # refused by ``problem`` with its own message
        path = url_path(url).expanduser()
        return f"{PREFIX}/{path if path.is_absolute() else data_dir / path}"

    def problem(self, url: str) -> str | None:
        rest = url.split("://", 1)[1]
        if not rest.startswith("/"):
            return "a SQLite URL is sqlite:///<path> (a host is not allowed)"
        if not rest.strip("/").strip():
            return "names no file (sqlite:////var/lib/batchd/batchd.sqlite3, say)"
        if "\0" in rest:
            return "must not contain a NUL character"
        if not url_path(url).is_absolute():
            return "the path must be absolute (or relative to daemon.data_dir)"
        return None

    def describe(self, url: str) -> str:
        return str(url_path(url))

    def exists(self, url: str) -> bool:
        return url_path(url).exists()

    def make(self, url: str, options: StoreOptions) -> JobStore:
        from batchd.store.sqlite import SqliteJobStore

        return SqliteJobStore(
            url_path(url),
            clock=options.clock,
            on_migration=options.on_migration,
            migrate=options.migrate,
        )


KIND = SqliteKind()
