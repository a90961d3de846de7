"""configure_logging: formats, levels, stdlib routing; redaction of every kind of leak (L1)."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from batchd import log as log_module
from batchd.log import MASK, configure_logging, redact, scrub, use_json
from batchd.secret import Secret

# A Mistral-style key (no prefix): only its registration as a Secret makes it recognisable.
CANARY = "Zq9c4nary7f3a9c2b1d0e8f7a6b5c4d3"
# An OpenAI-style key that was never wrapped in a Secret: caught by its pattern.
SK_CANARY = "sk-canary-7f3a9c2b1d0e8f7a6b5c"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
log = structlog.get_logger("batchd.test")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def capture(fmt: str, level: str = "debug") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level=level, fmt=fmt, stream=stream)
    return stream


def leak_everything() -> None:
    """Put the canaries everywhere a careless program might."""
    Secret(CANARY)
    log.info("leak.kwargs", note=CANARY, other=SK_CANARY, signing=WHSEC)
    log.info("leak.headers", headers={"Authorization": f"Bearer {CANARY}", "X-Api-Key": CANARY})
    log.info("leak.url", url=f"https://api.example.com/v1/x?api_key={CANARY}&page=2")
    log.info("leak.nested", items=[{"deep": (CANARY, {"token": "t"})}])
    log.info(f"leak.message {CANARY}")

    def call_provider(api_key: str) -> None:
        headers = {"Authorization": f"Bearer {api_key}"}  # a local that must not be shown
        del headers
        raise RuntimeError(f"upstream refused key {api_key}")

    try:
        call_provider(CANARY)
    except RuntimeError:
        log.exception("leak.traceback")
    try:
        call_provider(SK_CANARY)
    except RuntimeError as exc:
        log.error("leak.error_object", error=exc)
    logging.getLogger("aiohttp.client").warning("sending %s to %s", CANARY, "host")
    try:
        call_provider(CANARY)
    except RuntimeError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")


EVENTS = [
    "leak.kwargs",
    "leak.headers",
    "leak.url",
    "leak.nested",
    "leak.traceback",
    "leak.error_object",
    "sending *** to host",
    "Task exception was never retrieved",
]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_canary_survives(fmt: str) -> None:
    stream = capture(fmt)
    leak_everything()
    out = stream.getvalue()
    assert out.count(CANARY) == 0
    assert out.count(SK_CANARY) == 0
    assert out.count(WHSEC) == 0
    assert out.count("canary") == 0 and out.count("c4nary") == 0
    for event in EVENTS:
        assert event in out


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_have_the_standard_keys() -> None:
    stream = capture("json")
    log.info("job.created", job_id="job_1", count=3)
    logging.getLogger("aiohttp.access").info("GET /x")
    first, second = json_lines(stream)
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert first["timestamp"].endswith("Z") and "T" in first["timestamp"]
    assert {k: first[k] for k in ("level", "logger", "event", "job_id", "count")} == {
        "level": "info",
        "logger": "batchd.test",
        "event": "job.created",
        "job_id": "job_1",
        "count": 3,
    }
    assert {k: second[k] for k in ("level", "logger", "event")} == {
        "level": "info",
        "logger": "aiohttp.access",
        "event": "GET /x",
    }


def test_json_tracebacks_are_data_without_locals() -> None:
    stream = capture("json")

    def fail() -> None:
        secret_local = "local-value-123456"
        raise ValueError(f"bad {len(secret_local)}")

    try:
        fail()
    except ValueError:
        log.exception("step.failed")
    [record] = json_lines(stream)
    [exception] = record["exception"]
    assert (exception["exc_type"], exception["exc_value"]) == ("ValueError", "bad 18")
    assert exception["frames"][-1]["name"] == "fail"
    assert all("locals" not in frame for frame in exception["frames"])
    assert "local-value-123456" not in stream.getvalue()


def test_console_tracebacks_have_no_locals() -> None:
    stream = capture("console")

    def fail() -> None:
        secret_local = "local-value-123456"
        raise ValueError(f"bad {len(secret_local)}")

    try:
        fail()
    except ValueError:
        log.exception("step.failed")
    out = stream.getvalue()
    assert "step.failed" in out and "ValueError: bad 18" in out
    assert "local-value-123456" not in out


def test_levels_and_reconfiguration() -> None:
    stream = capture("json", level="warning")
    log.info("quiet")
    logging.getLogger("aiohttp").info("quiet too")
    log.warning("loud")
    configure_logging(level="debug", fmt="json", stream=stream)  # a reload: no duplicate handler
    log.debug("now.visible")
    assert [r["event"] for r in json_lines(stream)] == ["loud", "now.visible"]


def test_reconfiguring_switches_the_stream() -> None:
    first, second = capture("json"), io.StringIO()
    configure_logging(fmt="json", stream=second)
    log.info("where")
    assert first.getvalue() == "" and json.loads(second.getvalue())["event"] == "where"


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="level"):
        configure_logging(level="loud")
    with pytest.raises(ValueError, match="format"):
        configure_logging(fmt="xml")


def test_auto_format(tmp_path: Path) -> None:
    assert use_json("auto", io.StringIO(), {}) is True
    assert use_json("auto", Tty(), {}) is False
    assert use_json("json", Tty(), {}) is True
    assert use_json("console", io.StringIO(), {"JOURNAL_STREAM": "8:1"}) is False
    with (tmp_path / "journal").open("w") as handle:
        info = os.fstat(handle.fileno())
        journal = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}

        class TtyOnJournal(Tty):
            def fileno(self) -> int:
                return handle.fileno()

        assert use_json("auto", TtyOnJournal(), journal) is True
        # inherited by a terminal that is not the journal: still key=value
        assert use_json("auto", Tty(), journal) is False
        assert use_json("auto", TtyOnJournal(), {"JOURNAL_STREAM": "1:2"}) is False


def test_auto_on_a_terminal_is_key_value() -> None:
    stream = Tty()
    configure_logging(fmt="auto", stream=stream)
    log.info("terminal.line", job_id="job_1")
    out = stream.getvalue()
    assert "terminal.line" in out and "job_id" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_capture_logs_still_works_after_configuration() -> None:
    capture("json")
    with capture_logs() as logs:
        log.info("captured.event", job_id="j")
    assert logs == [{"event": "captured.event", "job_id": "j", "log_level": "info"}]


# ------------------------------------------------------------------------------ redact()


def test_redact_by_key() -> None:
    data = {
        "Authorization": "Bearer abc",
        "api_key": "k",
        "x-api-key": "k",
        "apiKey": "k",
        "webhook-signature": "v1,abc",
        "client_secret": "s",
        "refresh_token": "t",
        "password": "p",
        "Cookie": "c",
        "credentials": {"user": "u"},
        "total_tokens": 42,
        "secret_count": None,
        "job_id": "job_1",
    }
    assert redact(data) == {
        "Authorization": MASK,
        "api_key": MASK,
        "x-api-key": MASK,
        "apiKey": MASK,
        "webhook-signature": MASK,
        "client_secret": MASK,
        "refresh_token": MASK,
        "password": MASK,
        "Cookie": MASK,
        "credentials": MASK,
        "total_tokens": 42,
        "secret_count": None,
        "job_id": "job_1",
    }


def test_redact_by_value() -> None:
    Secret(CANARY)
    assert scrub(f"x {CANARY} y") == f"x {MASK} y"
    assert scrub("Authorization: Bearer abc.def-ghi") == f"Authorization: Bearer {MASK}"
    assert scrub(f"secret {WHSEC}!") == f"secret whsec_{MASK}!"
    assert scrub(f"key={SK_CANARY}") == f"key=sk-{MASK}"
    assert (
        scrub("https://h/p?a=1&access_token=xyz&b=2") == f"https://h/p?a=1&access_token={MASK}&b=2"
    )
    assert scrub("plain words stay") == "plain words stay"


def _scrub_every_pattern(text: str) -> str:
    """scrub without its shortcut: every substitution, whatever the text."""
    known = log_module._known.pattern()
    if known is not None:
        text = known.sub(MASK, text)
    for regex, replacement in log_module._SECRET_VALUE_PATTERNS:
        text = regex.sub(replacement, text)
    return text


@given(
    st.lists(
        st.sampled_from(
            [
                "Bearer ",
                "bEaReR\t",
                "basic ",
                "whsec_",
                "sk-",
                "=",
                "?",
                "&",
                ";",
                "token",
                "key",
                "abcdefgh12",
                "x",
                " ",
                "é",
                "\n",
            ]
        )
        | st.text(max_size=8),
        max_size=12,
    ).map("".join)
)
def test_the_shortcut_never_skips_a_secret(text: str) -> None:
    # A string without any pattern's fixed part skips the substitutions: same result.
    assert scrub(text) == _scrub_every_pattern(text)


def test_redact_walks_containers_and_stringifies_objects() -> None:
    class Thing:
        def __str__(self) -> str:
            return f"Thing({CANARY})"

    Secret(CANARY)
    value = {"a": [1, (CANARY, {"b": Secret("whatever-1")})], "c": Thing(), "d": CANARY.encode()}
    assert redact(value) == {
        "a": [1, [MASK, {"b": MASK}]],
        "c": f"Thing({MASK})",
        "d": f"b'{MASK}'",
    }


def test_redact_stops_at_depth() -> None:
    deep: Any = "leaf"
    for _ in range(100):
        deep = [deep]
    out = redact(deep)
    for _ in range(16):
        out = out[0]
    assert out == "..."


def test_the_default_stream_is_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt="json")
    log.info("to.stdout")
    captured = capsys.readouterr()
    assert json.loads(captured.out)["event"] == "to.stdout"
    assert captured.err == ""


def test_no_color_turns_the_console_colours_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for no_color, escapes in (("", True), ("1", False)):
        monkeypatch.setenv("NO_COLOR", no_color)
        stream = Tty()
        configure_logging(level="info", fmt="console", stream=stream)
        log.warning("colour.test", key="value")
        assert ("\x1b[" in stream.getvalue()) is escapes
