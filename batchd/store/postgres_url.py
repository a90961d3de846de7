"""The ``postgresql`` store kind: ``postgresql://user@host:5432/db`` (or ``postgres://``).

The URL is libpq's own connection URI, handed to libpq as written: ``sslmode``,
``sslrootcert``, ``sslcert``, ``connect_timeout``, ``application_name``, ``options``
(``-csearch_path=batchd`` for a schema of its own) and every other libpq parameter work as
PostgreSQL documents them. A password never sits in the URL (``problem`` refuses one): libpq
reads ``PGPASSWORD`` or ``~/.pgpass`` (``PGPASSFILE``) itself, and under systemd
``LoadCredential=store_password:/etc/batchd/store_password`` puts it in
``$CREDENTIALS_DIRECTORY/store_password``, which this kind reads when it builds the store and
which wins over the other two. Importing this module loads no driver: ``make`` does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from batchd.credentials import CREDENTIALS_DIRECTORY, SecretSources, SecretSpec, resolve_secret
from batchd.secret import Secret
from batchd.store.base import JobStore
from batchd.store.registry import StoreOptions

CREDENTIAL: Final = "store_password"
# Connection parameters that are secrets: refused in the URL like the password itself.
_SECRET_PARAMETERS: Final = frozenset({"password", "sslpassword"})
_ADVICE: Final = (
    "never put the password in the configuration: use $CREDENTIALS_DIRECTORY/"
    f"{CREDENTIAL} (systemd LoadCredential=), PGPASSWORD or ~/.pgpass"
)


def store_password(environ: dict[str, str] | None = None) -> Secret | None:
    """``$CREDENTIALS_DIRECTORY/store_password`` when systemd provides it (None otherwise: libpq
    then looks at ``PGPASSWORD`` and ``~/.pgpass``)."""
    env = os.environ if environ is None else environ
    directory = env.get(CREDENTIALS_DIRECTORY) or None
    sources = SecretSources(Path(directory) if directory else None)
    found = resolve_secret(SecretSpec("store.url", credential=CREDENTIAL), sources)
    return None if found is None else found[0]


class PostgresKind:
    def anchored(self, url: str, data_dir: Path) -> str:
        return url

    def problem(self, url: str) -> str | None:
        try:
            parts = urlsplit(url)
            _ = parts.port  # a port that is not a number raises here
        except ValueError as exc:
            return f"not a PostgreSQL URL: {exc}"
        if parts.password is not None:
            return f"the URL holds a password; {_ADVICE}"
        keys = {k.lower() for k, _ in parse_qsl(parts.query, keep_blank_values=True)}
        if keys & _SECRET_PARAMETERS:
            return f"the URL sets {', '.join(sorted(keys & _SECRET_PARAMETERS))}; {_ADVICE}"
        if "\0" in url:
            return "must not contain a NUL character"
        return None

    def describe(self, url: str) -> str:
        """scheme://user@host:port/database (no query: a URL shown never carries options)."""
        parts = urlsplit(url)
        user = f"{parts.username}@" if parts.username else ""
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{user}{host}{port}{parts.path}"

    def exists(self, url: str) -> bool:
        # The database is the administrator's; whether batchd's schema is in it, ``open()``
        # answers (a reader gets ``SchemaMismatch`` naming what to do).
        return True

    def make(self, url: str, options: StoreOptions) -> JobStore:
        from batchd.store.postgres import PostgresJobStore
        from batchd.store.postgres_db import Database

        password = store_password()
        db = Database(
            url,
            shown=self.describe(url),
            password=None if password is None else password.reveal(),
        )
        return PostgresJobStore(
            db, clock=options.clock, on_migration=options.on_migration, migrate=options.migrate
        )


KIND = PostgresKind()
