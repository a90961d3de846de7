"""tests/services.py: an absent service skips, or fails when the run requires services."""

from __future__ import annotations

import socket

import pytest

from tests import services


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _absent() -> services.Service:
    return services.Service(
        "Nothing", "BATCHD_TEST_NOTHING_URL", f"redis://127.0.0.1:{_closed_port()}/0"
    )


def test_an_absent_service_skips_with_its_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(services.REQUIRE_VAR, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"Nothing not reachable at 127\.0\.0\.1:\d+"):
        _absent().require()


def test_an_absent_service_fails_when_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(services.REQUIRE_VAR, "1")
    with pytest.raises(pytest.fail.Exception, match="forbids skipping"):
        _absent().require()


def test_the_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHD_TEST_POSTGRES_URL", "postgresql://u@db.example:6543/x")
    assert services.POSTGRES.url == "postgresql://u@db.example:6543/x"
    assert services.POSTGRES.address() == ("db.example", 6543)


def test_a_listening_service_gives_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        monkeypatch.setenv("BATCHD_TEST_X_URL", f"amqp://127.0.0.1:{port}/")
        service = services.Service("X", "BATCHD_TEST_X_URL", "amqp://nowhere/")
        assert service.require() == f"amqp://127.0.0.1:{port}/"
