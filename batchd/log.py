"""Logging: structlog for our events, the stdlib ``logging`` records of libraries through the
same chain, JSON lines for journald and readable key=value lines on a terminal.

Every record, ours or a library's, passes ``redact_processor`` after its exception is rendered
and before it is written: values under secret-looking keys become ``***``, and every string is
scrubbed of bearer tokens, ``whsec_`` secrets, ``sk-`` keys, secret query parameters and the
exact value of every ``Secret`` this process created. Tracebacks never show local variables.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Collection, Mapping
from typing import Any, Final, TextIO

import structlog
from structlog.processors import ExceptionRenderer
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

from batchd.secret import Secret, known_secret_values

MASK: Final = "***"
LEVELS: Final = ("debug", "info", "warning", "error")
# Libraries that log every call at debug level, user data included (aiosqlite: each SQL
# statement with its parameters): held at info, unless named in ``debug_loggers``.
QUIET_LOGGERS: Final = ("aiosqlite",)
FORMATS: Final = ("auto", "json", "console")
_MAX_DEPTH: Final = 16
_SECRET_KEY = re.compile(
    r"authorization|api[_-]?key|secret|token|password|passwd|webhook-signature|cookie|credential",
    re.IGNORECASE,
)
_SECRET_VALUE_PATTERNS: Final = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + MASK),
    (re.compile(r"whsec_[A-Za-z0-9+/=]*"), "whsec_" + MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "sk-" + MASK),
    (
        re.compile(
            r"(?i)([?&;](?:[a-z0-9_-]*(?:key|token|secret|signature|password|sig))=)[^&#\s\"']+"
        ),
        r"\1" + MASK,
    ),
)
# Every pattern above needs one of these in the text: a string with none of them (most logged
# values: ids, names, states) skips the four substitutions, the bulk of a log line's cost.
_MAY_MATCH: Final = re.compile(r"(?i)bearer|basic|whsec_|sk-|=")
_ORDER: Final = ("timestamp", "level", "logger", "event")
_HANDLER_NAME: Final = "batchd"


# ------------------------------------------------------------------------------ redaction


class _KnownValues:
    """A regex over the exact values of every ``Secret`` made so far (rebuilt when one is new)."""

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None

    def pattern(self) -> re.Pattern[str] | None:
        values = known_secret_values()
        if values != self._values:
            ordered = sorted(values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
            self._values = values
        return self._pattern


_known = _KnownValues()


def scrub(text: str) -> str:
    """``text`` with every secret-looking substring replaced."""
    pattern = _known.pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if _MAY_MATCH.search(text) is None:
        return text
    for regex, replacement in _SECRET_VALUE_PATTERNS:
        text = regex.sub(replacement, text)
    return text


def redact(obj: object, *, _depth: int = 0) -> Any:
    """A copy of ``obj`` that is safe to write: containers recursed, secrets masked, anything
    else made a scrubbed string (so no object's ``repr`` can leak past this point)."""
    if isinstance(obj, Secret):
        return MASK
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    if isinstance(obj, str):
        return scrub(obj)
    if _depth >= _MAX_DEPTH:
        return "..."
    if isinstance(obj, Mapping):
        return {str(k): _redact_item(str(k), v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [redact(item, _depth=_depth + 1) for item in obj]
    if isinstance(obj, bytes | bytearray):
        return scrub(repr(bytes(obj)))
    return scrub(str(obj))


def _redact_item(key: str, value: object, depth: int) -> Any:
    if _SECRET_KEY.search(key) and value is not None and not isinstance(value, bool | int | float):
        return MASK
    return redact(value, _depth=depth)


def redact_processor(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    redacted: EventDict = redact(event_dict)
    return redacted


def _order_keys(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """timestamp, level, logger and event first: easier to read in ``journalctl -o cat``."""
    head = {k: event_dict.pop(k) for k in _ORDER if k in event_dict}
    return {**head, **event_dict}


# ------------------------------------------------------------------------------ set-up


def _shared_processors() -> list[Processor]:
    """Run for structlog events and stdlib records alike, before the formatter's chain."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.processors.StackInfoRenderer(),
    ]


def _render_chain(json_lines: bool, colors: bool) -> list[Processor]:
    """Exception first (as data, no locals), then redaction, then the renderer."""
    exceptions: Processor
    renderer: Processor
    if json_lines:
        exceptions = ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        renderer = structlog.processors.JSONRenderer(default=str)
    else:
        exceptions = structlog.processors.format_exc_info  # plain traceback text, no locals
        renderer = structlog.dev.ConsoleRenderer(colors=colors, sort_keys=False)
    return [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        exceptions,
        redact_processor,
        _order_keys,
        renderer,
    ]


def use_json(fmt: str, stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """``auto``: JSON unless ``stream`` is a terminal, and always when ``$JOURNAL_STREAM`` names
    ``stream`` itself (systemd.exec(5): the variable alone may be inherited by a terminal)."""
    if fmt != "auto":
        return fmt == "json"
    env = os.environ if environ is None else environ
    return not _isatty(stream) or _is_journal(stream, env.get("JOURNAL_STREAM", ""))


def _colors(json_lines: bool, stream: TextIO) -> bool:
    """Colours for key=value lines on a terminal, unless ``NO_COLOR`` is set (no-color.org)."""
    return not json_lines and _isatty(stream) and not os.environ.get("NO_COLOR")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _is_journal(stream: TextIO, journal: str) -> bool:
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return False
    return bool(journal) and journal == f"{info.st_dev}:{info.st_ino}"


def configure_logging(
    *,
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    debug_loggers: Collection[str] = (),
) -> None:
    """Set up structlog and the stdlib root logger. Idempotent; call again (on reload) to change
    the level, the format or the stream. ``stream`` defaults to ``sys.stdout``. The
    ``QUIET_LOGGERS`` stay at info even at debug level unless named in ``debug_loggers``."""
    if level not in LEVELS or fmt not in FORMATS:
        raise ValueError(f"log level {level!r} / format {fmt!r} not one of {LEVELS} / {FORMATS}")
    out = sys.stdout if stream is None else stream
    json_lines = use_json(fmt, out)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=_render_chain(json_lines, colors=_colors(json_lines, out)),
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if name in debug_loggers else logging.INFO)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
