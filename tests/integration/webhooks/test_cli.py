"""``batchd webhooks ...`` and ``batchd events ...`` against a real configuration file, a real
SQLite database in tmp_path and a real HTTP receiver (a stdlib server in a thread, because the
CLI runs its own event loop)."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from structlog.testing import capture_logs

from batchd.cli import run
from batchd.store.base import DeliveryState, EventSpec
from batchd.store.sqlite import SqliteJobStore
from batchd.webhooks.signing import new_secret, parse_secret

SECRET = new_secret()


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Unconfigured structlog prints to stdout, which would mix with the --json output."""
    with capture_logs():
        yield


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200
    seen: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.seen.append((dict(self.headers), self.rfile.read(length)))
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Any) -> Path:
    url, _ = receiver
    (tmp_path / "data").mkdir()
    path = tmp_path / "batchd.toml"
    path.write_text(
        f"""
[daemon]
data_dir = "{tmp_path / "data"}"

[[webhooks]]
name = "local"
url = "{url}"
allow_http = true
allow_private = true
secret_env = "HOOK_SECRET"
"""
    )
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    return path


def with_store(config: Path, action: Any) -> Any:
    async def go() -> Any:
        store = SqliteJobStore(config.parent / "data" / "batchd.sqlite3")
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(go())


def test_new_secret_prints_only_a_secret(capsys: pytest.CaptureFixture[str]):
    assert run(["webhooks", "new-secret"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert len(parse_secret(out.strip())) == 32
    assert out.startswith("whsec_")


def test_webhooks_test_sends_a_signed_test_event(config: Path, receiver: Any, capsys: Any):
    _, handler = receiver
    assert run(["webhooks", "test", "local", "--config", str(config)]) == 0
    [(headers, body)] = handler.seen
    assert Webhook(SECRET).verify(body, headers)["type"] == "webhook.test"
    assert "200" in capsys.readouterr().out


def test_webhooks_test_fails_when_the_receiver_does(config: Path, receiver: Any, capsys: Any):
    _, handler = receiver
    handler.status = 500
    assert run(["webhooks", "test", "local", "--config", str(config)]) == 1
    capsys.readouterr()
    assert run(["webhooks", "test", "local", "--json", "--config", str(config)]) == 1
    shown = json.loads(capsys.readouterr().out)
    assert shown == {
        "endpoint": "local",
        "event_id": shown["event_id"],
        "outcome": "retry",
        "status": 500,
        "error": "HTTP 500",
        "duration_s": shown["duration_s"],
    }


def test_webhooks_test_of_an_unknown_endpoint_is_a_usage_error(config: Path):
    assert run(["webhooks", "test", "nope", "--config", str(config)]) == 2


def test_webhooks_list_shows_health(config: Path, capsys: Any):
    async def setup(store: SqliteJobStore) -> None:
        event = await store.append_event(EventSpec("batch.created", {}), now=1000.0)
        await store.fan_out(event.id, ["local", "old"], now=1000.0)
        await store.disable_endpoint("old", "the receiver answered 410 Gone", now=1001.0)

    with_store(config, setup)
    assert run(["webhooks", "list", "--json", "--config", str(config)]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["local"]["status"] == "enabled"
    assert rows["local"]["pending"] == 1
    assert rows["old"]["status"] == "not configured"
    assert rows["old"]["disabled_reason"] == "the receiver answered 410 Gone"


def test_webhooks_list_without_a_database_lists_the_configuration(config: Path, capsys: Any):
    assert run(["webhooks", "list", "--json", "--config", str(config)]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["name"], row["status"], row["pending"]) == ("local", "enabled", 0)


def test_webhooks_enable_re_enables_a_disabled_endpoint(config: Path):
    async def disable(store: SqliteJobStore) -> None:
        event = await store.append_event(EventSpec("batch.created", {}), now=1000.0)
        await store.fan_out(event.id, ["local"], now=1000.0)
        await store.disable_endpoint("local", "410", now=1001.0)

    with_store(config, disable)
    assert run(["webhooks", "enable", "local", "--config", str(config)]) == 0

    async def health(store: SqliteJobStore) -> Any:
        return await store.endpoint_health()

    [h] = with_store(config, health)
    assert h.disabled_at is None


def test_list_and_enable_need_no_signing_secret(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
):
    """As an admin runs them: the secrets exist only in the service's $CREDENTIALS_DIRECTORY."""

    async def disable(store: SqliteJobStore) -> None:
        await store.disable_endpoint("local", "410", now=1001.0)

    with_store(config, disable)
    monkeypatch.delenv("HOOK_SECRET")
    assert run(["webhooks", "list", "--json", "--config", str(config)]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["name"], row["status"]) == ("local", "disabled")
    assert run(["webhooks", "enable", "local", "--config", str(config)]) == 0
    assert run(["webhooks", "enable", "nope", "--config", str(config)]) == 2
    assert run(["webhooks", "test", "local", "--config", str(config)]) == 3  # test signs: needs it


def test_webhooks_test_reads_the_secret_from_the_credentials_folder(
    tmp_path: Path, receiver: Any, monkeypatch: pytest.MonkeyPatch
):
    """systemd/README.md: root runs ``CREDENTIALS_DIRECTORY=/etc/batchd/credentials batchd
    webhooks test NAME``; no systemd-run, no copy of the secret elsewhere."""
    url, handler = receiver
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "webhook_secret").write_text(SECRET)
    (credentials / "webhook_secret").chmod(0o600)
    path = tmp_path / "batchd.toml"
    path.write_text(
        f"""
[daemon]
data_dir = "{tmp_path / "data"}"

[[webhooks]]
name = "ops"
url = "{url}"
allow_http = true
allow_private = true
secret_credential = "webhook_secret"
"""
    )
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert run(["webhooks", "test", "ops", "--config", str(path)]) == 0
    [(headers, body)] = handler.seen
    assert Webhook(SECRET).verify(body, headers)["type"] == "webhook.test"
    assert not (tmp_path / "data").exists()  # it wrote nothing: no database, no files


def test_events_list_and_replay(config: Path, capsys: Any):
    async def setup(store: SqliteJobStore) -> list[str]:
        done = await store.append_event(EventSpec("batch.created", {"n": 1}), now=1000.0)
        open_ = await store.append_event(EventSpec("batch.running", {"n": 2}), now=2000.0)
        for event in (done, open_):
            await store.fan_out(event.id, ["local"], now=2000.0)
        await store.record_delivery(
            done.id,
            "local",
            now=2001.0,
            state=DeliveryState.DELIVERED,
            status=200,
            error=None,
            next_attempt_at=None,
        )
        return [done.id, open_.id]

    done_id, open_id = with_store(config, setup)
    assert run(["events", "list", "--json", "--config", str(config)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert (listed["truncated"], listed["next_cursor"]) == (False, None)
    rows = listed["events"]
    assert [r["id"] for r in rows] == [open_id, done_id]  # newest first, like jobs list
    assert rows[1]["deliveries"][0]["state"] == "delivered"
    assert run(["events", "list", "--undelivered", "--json", "--config", str(config)]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)["events"]] == [open_id]

    assert run(["events", "replay", done_id, "--config", str(config)]) == 0

    async def deliveries(store: SqliteJobStore) -> Any:
        return await store.deliveries_for(done_id), await store.unfanned_events()

    after, unfanned = with_store(config, deliveries)
    assert after == []  # un-fanned: the notifier fans it out again on its next pass
    assert [e.id for e in unfanned] == [done_id]

    assert (
        run(["events", "replay", "--since", "1970-01-01T00:30:00Z", "--config", str(config)]) == 0
    )
    assert run(["events", "replay", "--config", str(config)]) == 2
    assert run(["events", "replay", "evt_unknown", "--config", str(config)]) == 1
