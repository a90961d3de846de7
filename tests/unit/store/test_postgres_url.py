"""The ``postgresql`` store kind's URLs (no server needed: nothing here connects)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchd.errors import ConfigError
from batchd.store.postgres_url import KIND, store_password
from batchd.store.registry import describe, url_problem


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_both_schemes_name_the_kind(scheme: str) -> None:
    assert url_problem(f"{scheme}://batchd@db:5432/batchd") is None


def test_describe_shows_who_where_and_which_database_only() -> None:
    url = "postgresql://batchd@db.internal:6543/jobs?sslmode=verify-full&application_name=x"
    assert describe(url) == "postgresql://batchd@db.internal:6543/jobs"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://batchd:s3cret-pw@db/jobs",
        "postgresql://db/jobs?password=s3cret-pw",
        "postgresql://db/jobs?sslmode=require&PASSWORD=s3cret-pw",
    ],
)
def test_a_password_in_the_url_is_refused_and_never_echoed(url: str) -> None:
    problem = url_problem(url)
    assert problem is not None
    assert "s3cret-pw" not in problem
    assert "PGPASSWORD" in problem
    with pytest.raises(ConfigError) as caught:
        describe(url)
    assert "s3cret-pw" not in str(caught.value)


def test_a_port_that_is_not_a_number_is_refused() -> None:
    assert "not a PostgreSQL URL" in str(url_problem("postgresql://db:port/jobs"))


def test_the_password_comes_from_the_systemd_credential(tmp_path: Path) -> None:
    (tmp_path / "store_password").write_text("pw-from-systemd\n")
    found = store_password({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert found is not None
    assert found.reveal() == "pw-from-systemd"
    assert "pw-from-systemd" not in repr(found)


def test_without_the_credential_libpq_finds_the_password(tmp_path: Path) -> None:
    assert store_password({"CREDENTIALS_DIRECTORY": str(tmp_path)}) is None
    assert store_password({}) is None


def test_an_empty_credential_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "store_password").write_text("\n")
    with pytest.raises(ConfigError, match=r"store.url: .*/store_password is empty"):
        store_password({"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_the_kind_needs_no_driver_to_check_urls() -> None:
    assert KIND.exists("postgresql://db/jobs")
    assert KIND.anchored("postgresql://db/jobs", Path("/x")) == "postgresql://db/jobs"
