"""sd_notify message formatting and the no-op without ``$NOTIFY_SOCKET``."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from batchd.systemd import (
    MAX_STATUS_CHARS,
    SystemdNotifier,
    format_message,
    notify,
    notify_address,
    one_line,
    status_line,
    usec,
)


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@batchd-notify", b"\0batchd-notify"),
        ("@", None),
        ("", None),
        (None, None),
        ("relative/notify.sock", None),
        ("vsock:2:1234", None),
    ],
)
def test_notify_address_from_environment_value(value: str | None, address: object) -> None:
    assert notify_address(value) == address


def test_message_is_newline_joined_utf8() -> None:
    assert format_message("READY=1", "STATUS=prêt — 準備完了") == (
        "READY=1\nSTATUS=prêt — 準備完了".encode()
    )


@pytest.mark.parametrize("lines", [(), ("READY",), ("=1",), ("STATUS=a\nREADY=1",)])
def test_a_line_that_is_not_one_assignment_is_a_bug(lines: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        format_message(*lines)


def test_a_value_may_contain_equals_signs() -> None:
    assert format_message("STATUS=a=b") == b"STATUS=a=b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ok", "ok"),
        ("first\nsecond", "first second"),
        ("a\r\nb\rc", "a b c"),
        ("  padded\n", "padded"),
        ("nul\0byte", "nulbyte"),
    ],
)
def test_one_line(text: str, expected: str) -> None:
    assert one_line(text) == expected


def test_status_line_is_one_line_and_bounded() -> None:
    assert status_line("reload refused:\nbad key") == "STATUS=reload refused: bad key"
    long = status_line("é" * (MAX_STATUS_CHARS + 50))
    assert long == "STATUS=" + "é" * MAX_STATUS_CHARS


@pytest.mark.parametrize(("seconds", "micro"), [(120, 120_000_000), (0.5, 500_000), (-1, 0)])
def test_usec(seconds: float, micro: int) -> None:
    assert usec(seconds) == micro


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = SystemdNotifier({})
    assert notifier.enabled is False
    results = [
        notifier.ready(status="started"),
        notifier.reloading(),
        notifier.stopping(),
        notifier.status("x"),
        notifier.extend_timeout(10),
        notifier.watchdog(),
        notifier.errno(5),
        notify("READY=1", environ={}),
    ]
    assert results == [False] * len(results)


def test_default_environment_is_read_and_the_hermetic_test_env_has_no_socket() -> None:
    assert SystemdNotifier().enabled is False
    assert notify("READY=1") is False


def test_no_op_still_rejects_malformed_lines() -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        SystemdNotifier({}).notify("READY")


def test_send_failure_returns_false_and_logs_at_debug(tmp_path) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    with capture_logs() as logs:
        assert notifier.ready(status="started") is False
    assert logs == [
        {
            "event": "systemd.notify_failed",
            "log_level": "debug",
            "error": logs[0]["error"],
            "keys": ["READY", "STATUS"],
        }
    ]
