"""``batchd check`` connects to every queue source; ``STATUS=`` names a broker that is down.
The broker password never appears in either."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from batchd.cli import run
from batchd.queues.inflight import broker_problem
from batchd.store.base import StoreStats
from batchd.systemd import format_status
from tests.integration.cli.test_check import free_port, route, write
from tests.services import AMQP, REDIS

CANARY = "pw-canary-9c2e7d41"
EXIT_UNREACHABLE = 1


def source(name: str, kind: str, url: str) -> str:
    return (
        f'[[sources]]\nname = "{name}"\nkind = "{kind}"\nurl = "{url}"\nqueue = "batchd-check"\n'
        f'route = "chat"\npassword_env = "{name.upper()}_PW"\n'
    )


def without_password(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    host = f"{parts.username or 'guest'}@{parts.hostname}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}", parts.password or ""


def checks(capsys: Any, config: Path) -> tuple[int, dict[str, Any], str]:
    code = run(["check", "--json", "--config", str(config)])
    out = capsys.readouterr()
    doc = json.loads(out.out)
    return code, {c["check"]: c for c in doc["checks"]}, out.out + out.err


def test_check_connects_to_each_source_and_never_shows_the_password(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    amqp_url, amqp_pw = without_password(AMQP.require())
    redis_url = REDIS.require()
    dead = f"amqp://app@127.0.0.1:{free_port()}/"
    monkeypatch.setenv("RABBIT_PW", amqp_pw)
    monkeypatch.setenv("DEAD_PW", CANARY)
    monkeypatch.setenv("KEYDB_PW", "")  # an empty variable counts as unset
    sources = (
        source("rabbit", "amqp", amqp_url)
        + source("dead", "amqp", dead)
        + source("keydb", "redis", redis_url).replace('password_env = "KEYDB_PW"\n', "")
    )
    config = write(tmp_path, route(tmp_path / "spool"), sources)
    code, found, text = checks(capsys, config)
    assert code == EXIT_UNREACHABLE
    assert found["source rabbit"]["ok"] and found["source keydb"]["ok"]
    assert not found["source dead"]["ok"]
    assert found["source dead"]["detail"].startswith(f"amqp {dead} batchd-check: ")
    assert CANARY not in text


def test_a_missing_password_is_a_configuration_problem_naming_where(
    tmp_path: Path, capsys: Any
) -> None:
    config = write(tmp_path, route(tmp_path / "spool"), source("rabbit", "amqp", "amqp://a@h/"))
    code, found, _ = checks(capsys, config)
    assert code == 3
    assert "no broker password found (looked in" in found["source rabbit"]["detail"]
    assert "$RABBIT_PW" in found["source rabbit"]["detail"]


class Down:
    problem = "amqp amqp://app@127.0.0.1:1/ q: ConnectionRefusedError: refused"


def test_status_names_the_broker_that_is_down() -> None:
    text = format_status(StoreStats(), broker_down=broker_problem([object(), Down()]))
    assert text.endswith(
        ", broker down: amqp amqp://app@127.0.0.1:1/ q: ConnectionRefusedError: refused"
    )
    assert broker_problem([object()]) is None
    assert "broker down" not in format_status(StoreStats())
