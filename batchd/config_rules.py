"""Configuration rules that span sections, as pure functions on raw data or validated parts.

``batchd.config`` (the models) applies them in ``Settings``' validators and ``batchd.config_load``
(reading the file and the environment) builds on both: the import graph is one-way,
``config_load -> config -> config_rules``, and this module imports neither.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from batchd.store.registry import anchored, default_url


class Named(Protocol):
    @property
    def name(self) -> str: ...


class RouteLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def spool(self) -> Path | None: ...


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """``$STATE_DIRECTORY`` (systemd; the first if several), else the XDG state directory."""
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state)
    xdg = environ.get("XDG_STATE_HOME")
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    return (Path(xdg) if xdg else home / ".local" / "state") / "batchd"


def closest(word: str, choices: list[str] | Mapping[str, Any]) -> str:
    """A cheap "did you mean" suffix ("" when nothing is close)."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def fill_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """The embedded ``emulator`` provider, the default route, relative spools anchored."""
    data = dict(data)
    providers = data.get("providers", {})
    if isinstance(providers, dict) and "emulator" not in providers:
        data["providers"] = {"emulator": {"kind": "emulator"}, **providers}
    data_dir = _raw_data_dir(data.get("daemon"))
    data["store"] = _store_url(data.get("store"), data_dir)
    routes = data.get("routes")
    if not routes:
        data["routes"] = [{"name": "default", "spool": data_dir / "spool", "provider": "emulator"}]
    elif isinstance(routes, list):
        data["routes"] = [_anchor_spool(route, data_dir) for route in routes]
    return data


def _store_url(store: object, data_dir: Path) -> object:
    """``[store] url``: the default SQLite file in ``data_dir``, or a relative path under it."""
    if store is None:
        store = {}
    if not isinstance(store, dict):
        return store
    url = store.get("url", default_url(data_dir))
    return {**store, "url": anchored(url, data_dir) if isinstance(url, str) else url}


def _raw_data_dir(daemon: object) -> Path:
    validated = getattr(daemon, "data_dir", None)  # a DaemonSettings already built
    if isinstance(validated, Path):
        return validated
    raw = daemon.get("data_dir") if isinstance(daemon, dict) else None
    if isinstance(raw, str | Path) and str(raw):
        return Path(raw).expanduser().absolute()
    return default_data_dir(os.environ)


def _anchor_spool(route: object, data_dir: Path) -> object:
    if isinstance(route, dict) and isinstance(route.get("spool"), str) and route["spool"].strip():
        spool = Path(route["spool"]).expanduser()
        if not spool.is_absolute():
            return {**route, "spool": data_dir / spool}
    return route


def cross_problems(
    routes: Sequence[RouteLike], webhooks: Sequence[Named], providers: Mapping[str, object]
) -> list[str]:
    """Checks across sections: unique names, known providers, spools that do not overlap."""
    problems = _duplicates("routes", [r.name for r in routes])
    problems += _duplicates("webhooks", [w.name for w in webhooks])
    for i, route in enumerate(routes):
        if route.provider not in providers:
            hint = closest(route.provider, providers)
            problems.append(f"routes[{i}].provider: no provider named {route.provider!r}{hint}")
    spools = [r.spool for r in routes]
    for j, later in enumerate(spools):
        for i, earlier in enumerate(spools[:j]):
            if later is None or earlier is None:
                continue  # a route without a drop folder
            if later == earlier or earlier in later.parents or later in earlier.parents:
                problems.append(f"routes[{j}].spool: overlaps routes[{i}].spool ({earlier})")
    return problems


def _duplicates(section: str, names: list[str]) -> list[str]:
    first: dict[str, int] = {}
    problems = []
    for i, name in enumerate(names):
        if name in first:
            problems.append(
                f"{section}[{i}].name: {name!r} is already used by {section}[{first[name]}]"
            )
        first.setdefault(name, i)
    return problems
