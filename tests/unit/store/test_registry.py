"""The store registry: a URL's scheme picks the kind, imported on first use; one opener."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchd.errors import ConfigError
from batchd.store import registry
from batchd.store.memory import MemoryJobStore
from batchd.store.registry import StoreOptions, make_store, store_exists, url_problem

PROBE = "tests.unit.store.probe_kind"


@pytest.fixture
def probe() -> Iterator[None]:
    sys.modules.pop(PROBE, None)
    registry.register("probe", f"{PROBE}:KIND")
    try:
        yield
    finally:
        registry._KINDS.pop("probe", None)
        registry._loaded.pop("probe", None)


def test_a_registered_kind_is_imported_only_when_its_scheme_is_used(probe: None) -> None:
    assert "probe" in registry.schemes()
    assert PROBE not in sys.modules  # registering imports nothing
    make_store("sqlite:////tmp/x.sqlite3")  # another scheme: still nothing
    assert PROBE not in sys.modules
    store = make_store("probe://ok", StoreOptions(migrate=False))
    assert isinstance(store, MemoryJobStore)
    made = sys.modules[PROBE].MADE
    assert made == [("probe://ok", StoreOptions(migrate=False))]


def test_the_kind_checks_its_own_urls(probe: None) -> None:
    assert url_problem("probe://ok") is None
    assert url_problem("probe://nope") == "only probe://ok"
    with pytest.raises(ConfigError, match=r"store.url: only probe://ok"):
        make_store("probe://nope")


def test_an_unknown_scheme_is_refused_before_anything_is_built() -> None:
    problem = url_problem("mysql://db/batchd")
    assert problem == (
        "scheme 'mysql' names no store kind (known: memory, postgres, postgresql, sqlite)"
    )
    assert "no scheme" in str(url_problem("/var/lib/batchd/batchd.sqlite3"))
    with pytest.raises(ConfigError, match="mysql"):
        make_store("mysql://db/batchd")


def test_sqlite_opens_the_named_file(tmp_path: Path) -> None:
    from batchd.store.sqlite import SqliteJobStore

    url = f"sqlite:///{tmp_path}/jobs.sqlite3"
    store = make_store(url)
    assert isinstance(store, SqliteJobStore)
    assert store._db.path == tmp_path / "jobs.sqlite3"
    assert not store_exists(url)
    (tmp_path / "jobs.sqlite3").touch()
    assert store_exists(url)
    assert registry.describe(url) == str(tmp_path / "jobs.sqlite3")


def test_memory_is_a_fresh_store_that_no_other_process_sees() -> None:
    one, two = make_store("memory://"), make_store("memory://")
    assert isinstance(one, MemoryJobStore) and one is not two
    assert not store_exists("memory://")
