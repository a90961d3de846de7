"""A PostgreSQL schema of its own for one test: created empty, dropped afterwards.

``POSTGRES.require()`` (``tests/services.py``) skips, or fails under
``BATCHD_TEST_REQUIRE_SERVICES=1``, where no server answers. A schema is much quicker to create
and drop than a database, and the store's URL reaches it through libpq's ``options``
(``-csearch_path=<schema>``), as a user who shares one database between installs would.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg

from tests.services import POSTGRES


def with_schema(url: str, schema: str) -> str:
    """``url`` whose connections use ``schema`` (libpq ``options=-csearch_path=...``)."""
    parts = urlsplit(url)
    option = "options=" + quote(f"-csearch_path={schema}", safe="")
    query = f"{parts.query}&{option}" if parts.query else option
    return urlunsplit(parts._replace(query=query))


def admin_url() -> str:
    return POSTGRES.require()


@contextmanager
def fresh_schema(prefix: str = "t") -> Iterator[str]:
    """The URL of a new empty schema (skips without a server); dropped on exit."""
    base = admin_url()
    schema = f"batchd_{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_schema(base, schema)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
