"""``[[sources]]``: validated with the configuration; the broker password is a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchd.errors import ConfigError
from tests.unit.config.helpers import error_text, load

CANARY = "pw-canary-5e1d9b7a3c"
BASE = (
    "[providers.emulator]\nkind = 'emulator'\n"
    "[[routes]]\nname = 'docs'\nspool = '/srv/docs'\nprovider = 'emulator'\n"
)


def source(**keys: object) -> str:
    fields = {"name": "'orders'", "kind": "'amqp'", "url": "'amqp://app@127.0.0.1:5672/'"}
    fields |= {"queue": "'requests'", "route": "'docs'"}
    fields |= {k: repr(v) if isinstance(v, str) else str(v) for k, v in keys.items()}
    return "[[sources]]\n" + "".join(f"{k} = {v}\n" for k, v in fields.items())


def test_a_source_with_its_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, BASE + source())
    (src,) = settings.sources
    assert (src.kind, src.queue, src.route, src.max_requests, src.max_wait_s) == (
        "amqp",
        "requests",
        "docs",
        10_000,
        600.0,
    )
    assert (src.dead_letter_to, src.results_to) == ("requests.dead", "requests.results")
    assert settings.source_url(0).reveal() == "amqp://app@127.0.0.1:5672/"


def test_the_password_comes_from_the_environment_into_the_url_only(tmp_path: Path) -> None:
    settings = load(tmp_path, BASE + source(password_env="ORDERS_PW"), ORDERS_PW=CANARY)
    url = settings.source_url(0)
    assert url.reveal() == f"amqp://app:{CANARY}@127.0.0.1:5672/"
    assert CANARY not in str(url) and CANARY not in repr(url)
    assert CANARY not in settings.sources[0].describe()
    assert CANARY not in repr(settings)


def test_the_password_comes_from_a_systemd_credential_by_default(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "orders_password").write_text("p@ss/word\n")
    settings = load(tmp_path, BASE + source(), CREDENTIALS_DIRECTORY=str(creds))
    assert settings.source_url(0).reveal() == "amqp://app:p%40ss%2Fword@127.0.0.1:5672/"


def test_a_named_password_that_is_missing_is_an_error_naming_where(tmp_path: Path) -> None:
    settings = load(tmp_path, BASE + source(password_env="ORDERS_PW"))
    with pytest.raises(ConfigError, match=r"sources\[0\] \(orders\): no broker password found"):
        settings.source_url(0)


def test_a_password_in_the_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    text = error_text(tmp_path, BASE + source(url=f"amqp://app:{CANARY}@127.0.0.1/"))
    assert "sources[0].url: must not contain a password" in text
    assert CANARY not in text


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"route": "nope"}, "sources[0].route: no route named 'nope'"),
        ({"kind": "redis"}, "a redis source needs a redis:// URL"),
        ({"url": "http://127.0.0.1/"}, "sources[0].url: must be an amqp(s):// or redis(s)://"),
        ({"dead_letter": "requests"}, "dead_letter and results must differ from queue"),
        ({"max_wait_s": 0}, "sources[0].max_wait_s"),
        ({"prefetch": 70000}, "sources[0].prefetch"),
        ({"pasword_env": "X"}, "sources[0].pasword_env: unknown key"),
    ],
)
def test_bad_sources_are_refused_naming_the_key(
    tmp_path: Path, keys: dict[str, object], problem: str
) -> None:
    assert problem in error_text(tmp_path, BASE + source(**keys))


def test_two_sources_of_one_name_are_refused(tmp_path: Path) -> None:
    text = error_text(tmp_path, BASE + source() + source(queue="other"))
    assert "sources[1].name: 'orders' is already used by sources[0]" in text


def test_a_redis_source(tmp_path: Path) -> None:
    settings = load(
        tmp_path, BASE + source(kind="redis", url="redis://127.0.0.1:6379/0", group="g")
    )
    assert (settings.sources[0].kind, settings.sources[0].group) == ("redis", "g")
