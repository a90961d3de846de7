"""Choosing the job store: ``[store] url`` names it, and this module is the one place it is opened.

The URL's scheme names a store kind. A kind is registered by scheme with the dotted path of
an object that has the ``StoreKind`` methods, and that module is imported only when the
scheme is used, so that choosing SQLite never loads another engine's driver (and the other
way round). Everything outside the kind's own module sees only the ``JobStore`` protocol.

Adding a store: write its ``JobStore`` and a ``StoreKind`` in its own module, add one line to
``_KINDS`` (or call ``register`` before the settings are loaded), and run the store behaviour
suite (``tests/integration/store/``) against it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import urlsplit

from batchd.clock import Clock
from batchd.errors import ConfigError
from batchd.store.base import JobStore

DEFAULT_FILE: Final = "batchd.sqlite3"


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """How a process opens the store. ``migrate=False``: a reader (the CLI) that must never
    create the store or change its schema; a missing store is then ``StoreError``."""

    migrate: bool = True
    on_migration: Callable[[int], None] | None = None
    clock: Clock | None = None


class StoreKind(Protocol):
    def anchored(self, url: str, data_dir: Path) -> str:
        """``url`` with anything relative in it anchored at ``data_dir`` (done at load)."""
        ...

    def problem(self, url: str) -> str | None:
        """Why ``url`` cannot name a store of this kind (None: it can). Never echoes a secret."""
        ...

    def describe(self, url: str) -> str:
        """``url`` for messages and ``batchd check``: no password, no secret."""
        ...

    def exists(self, url: str) -> bool:
        """Whether the store has been created (``batchd run`` creates it on first start)."""
        ...

    def make(self, url: str, options: StoreOptions) -> JobStore:
        """The store, not yet opened (``await store.open()``)."""
        ...


_KINDS: dict[str, str] = {
    "sqlite": "batchd.store.sqlite_url:KIND",
    "memory": "batchd.store.memory_url:KIND",
    "postgresql": "batchd.store.postgres_url:KIND",
    "postgres": "batchd.store.postgres_url:KIND",
}
_loaded: dict[str, StoreKind] = {}


def register(scheme: str, target: str) -> None:
    """Name a store kind: ``target`` is ``"package.module:ATTRIBUTE"``, imported on first use."""
    _KINDS[scheme] = target
    _loaded.pop(scheme, None)


def schemes() -> list[str]:
    return sorted(_KINDS)


def default_url(data_dir: Path) -> str:
    """``sqlite:///<data_dir>/batchd.sqlite3`` (an absolute path, so four slashes)."""
    return f"sqlite:///{data_dir / DEFAULT_FILE}"


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower() if "://" in url else ""


def url_problem(url: str) -> str | None:
    """Why ``url`` names no usable store (None: it does)."""
    scheme = scheme_of(url)
    if scheme not in _KINDS:
        shown = f"scheme {scheme!r}" if scheme else "no scheme (scheme://...)"
        return f"{shown} names no store kind (known: {', '.join(schemes())})"
    return kind(scheme).problem(url)


def anchored(url: str, data_dir: Path) -> str:
    """``url`` as the loaded configuration keeps it (relative paths under ``data_dir``)."""
    scheme = scheme_of(url)
    return kind(scheme).anchored(url, data_dir) if scheme in _KINDS else url


def kind(scheme: str) -> StoreKind:
    found = _loaded.get(scheme)
    if found is None:
        module, _, attribute = _KINDS[scheme].partition(":")
        found = getattr(importlib.import_module(module), attribute)
        _loaded[scheme] = found
    return found


def _checked(url: str) -> StoreKind:
    problem = url_problem(url)
    if problem is not None:
        raise ConfigError(f"store.url: {problem}")
    return kind(scheme_of(url))


def describe(url: str) -> str:
    return _checked(url).describe(url)


def store_exists(url: str) -> bool:
    return _checked(url).exists(url)


def make_store(url: str, options: StoreOptions | None = None) -> JobStore:
    """The store named by ``url`` (not yet opened): the one place a store is built."""
    return _checked(url).make(url, options or StoreOptions())
