"""systemd integration: ``sd_notify`` over ``$NOTIFY_SOCKET``, the health-gated watchdog, and the
``STATUS=`` line. Standard library only for the protocol (no ``sdnotify``/``systemd-python``).

The protocol (sd_notify(3)): one datagram of newline-separated ``KEY=VALUE`` lines, UTF-8, sent to
the ``AF_UNIX`` datagram socket named in ``$NOTIFY_SOCKET``; a leading ``@`` names a socket in the
abstract namespace. Without the variable every call is a no-op that returns ``False``, so the
daemon runs the same way in a terminal. A failed send is logged at debug level and never raises:
losing a status line must not take the daemon down.

The watchdog (sd_watchdog_enabled(3)): when the unit sets ``WatchdogSec=``, systemd exports
``WATCHDOG_USEC`` (and ``WATCHDOG_PID``); we ping ``WATCHDOG=1`` every half of it, but only while
every loop's heartbeat is fresh. A stalled loop therefore stops the pings, and systemd kills and
restarts the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Final, Protocol, TextIO

import structlog

log = structlog.get_logger(__name__)

SEND_TIMEOUT_S: Final = 1.0
MAX_STATUS_CHARS: Final = 400
MAX_ERROR_CHARS: Final = 160
_USEC_PER_S: Final = 1_000_000

Address = str | bytes


# ---------------------------------------------------------------------------- pure helpers
def notify_address(value: str | None) -> Address | None:
    """The socket address named by ``$NOTIFY_SOCKET``: a filesystem path (``/run/...``) or an
    abstract name (``@name`` -> ``b"\\0name"``). Anything else (unset, ``vsock:``...) is None."""
    if not value:
        return None
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def one_line(text: str) -> str:
    """``text`` on a single line: line breaks become spaces (a newline would start a new
    ``KEY=VALUE`` assignment in the datagram) and NUL characters go."""
    return " ".join(text.replace("\0", "").splitlines()).strip()


def format_message(*lines: str) -> bytes:
    """The datagram for ``lines`` (``KEY=VALUE`` each). Raises ``ValueError`` for a line that is
    not an assignment or that spans lines: that is a bug in the caller, never user input."""
    if not lines:
        raise ValueError("an sd_notify message needs at least one KEY=VALUE line")
    for line in lines:
        key, sep, _ = line.partition("=")
        if not sep or not key or "\n" in line:
            raise ValueError(f"not a single KEY=VALUE line: {line!r}")
    return "\n".join(lines).encode("utf-8")


def status_line(text: str) -> str:
    """``STATUS=`` with ``text`` on one line, cut to ``MAX_STATUS_CHARS`` characters."""
    return f"STATUS={one_line(text)[:MAX_STATUS_CHARS]}"


def usec(seconds: float) -> int:
    return max(0, round(seconds * _USEC_PER_S))


def monotonic_usec() -> int:
    """``CLOCK_MONOTONIC`` in microseconds (what ``MONOTONIC_USEC=`` carries)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def watchdog_interval_s(
    environ: Mapping[str, str] | None = None, *, pid: int | None = None
) -> float | None:
    """How often to ping ``WATCHDOG=1``: half of ``$WATCHDOG_USEC``, in seconds.

    None when the watchdog is off: the variable is unset or not a positive integer, or
    ``$WATCHDOG_PID`` is set and names another process (the variables were inherited)."""
    env = os.environ if environ is None else environ
    watchdog_pid = env.get("WATCHDOG_PID")
    if watchdog_pid is not None:
        own_pid = os.getpid() if pid is None else pid
        if not watchdog_pid.isdigit() or int(watchdog_pid) != own_pid:
            return None
    raw = env.get("WATCHDOG_USEC", "")
    if not raw.isdigit() or int(raw) == 0:
        return None
    return int(raw) / _USEC_PER_S / 2


# ---------------------------------------------------------------------------- the notifier
class SystemdNotifier:
    """Sends sd_notify messages. Reads ``$NOTIFY_SOCKET`` once, at construction; every method
    returns True when the datagram was sent, False when notification is off or the send failed."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = notify_address(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *lines: str, wait: bool = True) -> bool:
        """Send ``lines`` as one datagram. With ``wait=False`` a full receive queue drops the
        message instead of blocking the caller (the event loop) for up to ``SEND_TIMEOUT_S``."""
        data = format_message(*lines)
        if self._address is None:
            return False
        try:
            _send(data, self._address, timeout_s=SEND_TIMEOUT_S if wait else 0.0)
        except OSError as exc:
            log.debug("systemd.notify_failed", error=str(exc), keys=_keys(lines))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *_optional_status(status))

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC=`` (needed by ``Type=notify-reload`` on
        systemd >= 253, ignored by older ones). Must be followed by ``ready()``."""
        return self.notify(
            "RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", *_optional_status(status)
        )

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *_optional_status(status))

    def status(self, text: str) -> bool:
        """Informational, sent every few seconds: dropped rather than waited for."""
        return self.notify(status_line(text), wait=False)

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for ``seconds`` more before the start (or stop) timeout fires; repeat before it
        runs out (a long migration)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={usec(seconds)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def errno(self, number: int) -> bool:
        return self.notify(f"ERRNO={int(number)}")


def notify(*lines: str, environ: Mapping[str, str] | None = None) -> bool:
    """One-off ``sd_notify``: send ``lines`` to ``$NOTIFY_SOCKET`` (False when it is unset)."""
    return SystemdNotifier(environ).notify(*lines)


def _send(data: bytes, address: Address, *, timeout_s: float) -> None:
    """One datagram from a fresh socket, as libsystemd does: nothing stays open between the
    few messages a minute, and a full receive queue costs at most ``timeout_s`` (0: none)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout_s)
        sock.sendto(data, address)


def _optional_status(status: str | None) -> tuple[str, ...]:
    return () if status is None else (status_line(status),)


def _keys(lines: tuple[str, ...]) -> list[str]:
    return [line.partition("=")[0] for line in lines]


# ---------------------------------------------------------------------------- heartbeats
class Heartbeats:
    """When each loop last showed it was alive (monotonic seconds).

    ``register`` starts a loop's clock, so a loop that never beats turns stale after
    ``max_age_s`` like one that stopped beating."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}

    def register(self, name: str) -> None:
        self._last.setdefault(name, self._clock())

    def beat(self, name: str) -> None:
        self._last[name] = self._clock()

    def forget(self, name: str) -> None:
        self._last.pop(name, None)

    @property
    def names(self) -> list[str]:
        return sorted(self._last)

    def age(self, name: str, now: float) -> float:
        """Seconds since ``name`` last beat (or was registered)."""
        return max(0.0, now - self._last.get(name, now))

    def stale(self, now: float, max_age_s: float) -> list[str]:
        """Names of the loops whose last beat is older than ``max_age_s``, sorted."""
        return sorted(name for name, at in self._last.items() if now - at > max_age_s)


# ---------------------------------------------------------------------------- watchdog
class Pinger(Protocol):
    def watchdog(self) -> bool: ...


def watchdog_transition(before: list[str], now: list[str]) -> str | None:
    """The event to log when the set of stale loops changes: ``watchdog.stalled`` when it
    becomes non-empty or changes, ``watchdog.recovered`` when it empties, else None."""
    if now == before:
        return None
    return "watchdog.stalled" if now else "watchdog.recovered"


async def watchdog_loop(
    notifier: Pinger,
    heartbeats: Heartbeats,
    *,
    interval_s: float,
    max_age_s: float,
    stop: asyncio.Event,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Ping ``WATCHDOG=1`` every ``interval_s`` while no heartbeat is older than ``max_age_s``.

    Reaching the check proves the event loop is alive; the heartbeats prove each worker loop
    is. While any loop is stale nothing is sent, so systemd's ``WatchdogSec=`` runs out and the
    service is killed and restarted. Returns when ``stop`` is set."""
    stale: list[str] = []
    while not stop.is_set():
        now_stale = heartbeats.stale(clock(), max_age_s)
        event = watchdog_transition(stale, now_stale)
        if event is not None:
            _log_transition(event, now_stale, max_age_s)
        stale = now_stale
        if not stale:
            notifier.watchdog()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)


def _log_transition(event: str, stale: list[str], max_age_s: float) -> None:
    if stale:
        log.error(event, loops=stale, max_age_s=max_age_s)
    else:
        log.info(event)


# ---------------------------------------------------------------------------- STATUS=
class StatusFigures(Protocol):
    """What ``format_status`` reads (``batchd.store.base.StoreStats`` fits)."""

    @property
    def open_jobs(self) -> int: ...

    @property
    def pending_downloads(self) -> int: ...

    @property
    def undelivered_events(self) -> int: ...


def format_status(
    stats: StatusFigures, *, last_error: str | None = None, broker_down: str | None = None
) -> str:
    """The ``STATUS=`` text: ``open jobs 12, pending downloads 1, undelivered events 0, last
    provider error: none`` (then ``, broker down: <source problem>`` while a queue source cannot
    reach its broker)."""
    error = one_line(last_error)[:MAX_ERROR_CHARS] if last_error else "none"
    text = (
        f"open jobs {stats.open_jobs}, pending downloads {stats.pending_downloads}, "
        f"undelivered events {stats.undelivered_events}, last provider error: {error}"
    )
    if broker_down:
        text += f", broker down: {one_line(broker_down)[:MAX_ERROR_CHARS]}"
    return text


# ---------------------------------------------------------------------------- logs
def journal_stream_matches(environ: Mapping[str, str], fd: int) -> bool:
    """True when ``fd`` is the journal stream systemd connected (``$JOURNAL_STREAM`` is
    ``<device>:<inode>`` of it; a child whose output was redirected inherits a stale value)."""
    device, sep, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not sep or not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def prefer_json_logs(
    environ: Mapping[str, str] | None = None, stream: TextIO | None = None
) -> bool:
    """JSON log lines when the stream is the journal or not a terminal; key-value on a
    terminal. For ``log.py`` to pick its renderer when the format is ``auto``."""
    env = os.environ if environ is None else environ
    out = sys.stdout if stream is None else stream
    try:
        fd = out.fileno()
    except (OSError, ValueError):
        return True
    if journal_stream_matches(env, fd):
        return True
    return not os.isatty(fd)
