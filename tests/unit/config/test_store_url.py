"""``[store] url``: which job store the daemon and every command open."""

from __future__ import annotations

from pathlib import Path

from batchd.store.registry import default_url

from .helpers import error_text, load, problems


def test_the_default_is_the_sqlite_file_in_the_data_folder(tmp_path: Path) -> None:
    settings = load(tmp_path, f'[daemon]\ndata_dir = "{tmp_path / "state"}"\n')
    assert settings.store.url == f"sqlite:///{tmp_path}/state/batchd.sqlite3"
    assert settings.store.url == default_url(tmp_path / "state")
    assert settings.store.url.startswith("sqlite:////")  # an absolute path: four slashes


def test_the_default_follows_a_data_folder_set_in_the_environment(tmp_path: Path) -> None:
    settings = load(tmp_path, "", BATCHD_DAEMON__DATA_DIR=str(tmp_path / "elsewhere"))
    assert settings.store.url == f"sqlite:///{tmp_path}/elsewhere/batchd.sqlite3"


def test_an_absolute_sqlite_path_is_kept(tmp_path: Path) -> None:
    settings = load(tmp_path, f'[store]\nurl = "sqlite:///{tmp_path}/db/jobs.sqlite3"\n')
    assert settings.store.url == f"sqlite:///{tmp_path}/db/jobs.sqlite3"


def test_a_relative_sqlite_path_is_under_the_data_folder(tmp_path: Path) -> None:
    text = f'[daemon]\ndata_dir = "{tmp_path / "d"}"\n[store]\nurl = "sqlite:///sub/jobs.db"\n'
    assert load(tmp_path, text).store.url == f"sqlite:///{tmp_path}/d/sub/jobs.db"


def test_the_environment_sets_the_url(tmp_path: Path) -> None:
    settings = load(tmp_path, "", BATCHD_STORE__URL="memory://")
    assert settings.store.url == "memory://"


def test_an_unknown_scheme_names_the_key_and_the_known_kinds(tmp_path: Path) -> None:
    text = error_text(tmp_path, '[store]\nurl = "mysql://u:hunter2@db/batchd"\n')
    assert text.startswith(f"{tmp_path / 'batchd.toml'}: store.url: scheme 'mysql'")
    assert "known: memory, postgres, postgresql, sqlite" in text
    assert "hunter2" not in text  # a password in a URL is never echoed


def test_a_postgresql_url_with_a_password_is_refused_without_echoing_it(tmp_path: Path) -> None:
    text = error_text(tmp_path, '[store]\nurl = "postgresql://u:hunter2@db/batchd"\n')
    assert text.startswith(f"{tmp_path / 'batchd.toml'}: store.url: the URL holds a password")
    assert "CREDENTIALS_DIRECTORY/store_password" in text
    assert "hunter2" not in text
    query = error_text(tmp_path, '[store]\nurl = "postgres://db/b?sslpassword=hunter2"\n')
    assert "sets sslpassword" in query
    assert "hunter2" not in query


def test_a_postgresql_url_is_kept_as_written(tmp_path: Path) -> None:
    url = "postgresql://batchd@db.internal:5432/batchd?sslmode=verify-full&sslrootcert=/etc/ca.pem"
    assert load(tmp_path, f'[store]\nurl = "{url}"\n').store.url == url


def test_a_bad_url_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    assert problems(tmp_path, "", BATCHD_STORE__URL="batchd.sqlite3") == [
        ("BATCHD_STORE__URL", "store.url")
    ]


def test_malformed_sqlite_urls_are_refused_with_the_reason(tmp_path: Path) -> None:
    assert "host is not allowed" in error_text(tmp_path, '[store]\nurl = "sqlite://h/x.db"\n')
    assert "names no file" in error_text(tmp_path, '[store]\nurl = "sqlite:///"\n')
    assert "memory://" in error_text(tmp_path, '[store]\nurl = "memory://x"\n')


def test_an_unknown_store_key_is_an_error(tmp_path: Path) -> None:
    assert problems(tmp_path, '[store]\npath = "x"\n') == [
        (str(tmp_path / "batchd.toml"), "store.path")
    ]
