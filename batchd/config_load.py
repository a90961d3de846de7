"""Loading the configuration: a TOML file, then ``BATCHD_*`` environment overrides, validated once.

``load_settings`` reads ``--config`` / ``$BATCHD_CONFIG`` / ``/etc/batchd/batchd.toml`` (if it
exists; otherwise built-in defaults), applies ``BATCHD_<SECTION>__<KEY>`` overrides for the
scalar keys of ``[daemon]``, ``[intake]``, ``[submit]``, ``[track]`` and ``[collect]``, and
validates everything once against the models of ``batchd.config``. No other module reads the
environment or configuration files.

Errors are ``ConfigError``: one line per problem, ``<file or variable>: <dotted key>: <problem>``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from batchd.config import (
    SECTIONS,
    ProviderConfig,
    RouteConfig,
    Settings,
    WebhookConfig,
)
from batchd.config_rules import closest, default_data_dir
from batchd.errors import ConfigError
from batchd.queues.config import SourceConfig

DEFAULT_CONFIG_PATH = Path("/etc/batchd/batchd.toml")
ENV_CONFIG: Final = "BATCHD_CONFIG"
ENV_PREFIX: Final = "BATCHD_"


def load_settings(
    path: Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, override and validate the configuration (see the module docstring)."""
    env = os.environ if environ is None else environ
    chosen = choose_path(path, env)
    data = read_toml(chosen) if chosen is not None else {}
    where = str(chosen) if chosen is not None else "built-in configuration"
    origins = apply_env(data, env)
    daemon = data.setdefault("daemon", {})
    if isinstance(daemon, dict) and "data_dir" not in daemon:
        daemon["data_dir"] = str(default_data_dir(env))
    data["source"] = chosen
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        # not chained: pydantic's text echoes input values, and a pasted key must not leak
        raise ConfigError(format_errors(exc, where, origins)) from None
    settings.capture_secret_sources(env)
    return settings


def choose_path(path: Path | None, environ: Mapping[str, str]) -> Path | None:
    """An explicit path (argument or ``$BATCHD_CONFIG``) must exist; the default may not."""
    if path is not None:
        return path
    if environ.get(ENV_CONFIG):
        return Path(environ[ENV_CONFIG])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def env_var(section: str, key: str) -> str:
    """The one environment variable of a scalar key: ``BATCHD_<SECTION>__<KEY>``."""
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


def env_vars() -> dict[str, str]:
    """Every override variable and the dotted key it sets (for ``--help`` and the README)."""
    return {
        env_var(section, key): f"{section}.{key}"
        for section, model in SECTIONS.items()
        for key in model.model_fields
    }


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid UTF-8") from exc
    if "source" in data:
        raise ConfigError(f"{path}: source: unknown key")
    return data


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """Copy ``BATCHD_<SECTION>__<KEY>`` values into ``data``; return key -> variable."""
    known = env_vars()
    origins: dict[tuple[str, str], str] = {}
    problems: list[str] = []
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        if var not in known:
            problems.append(f"{var}: unknown setting{closest(var, known)}")
            continue
        section, key = known[var].split(".")
        target = data.setdefault(section, {})
        if isinstance(target, dict):
            target[key] = environ[var]
            origins[(section, key)] = var
    if problems:
        raise ConfigError("\n".join(problems))
    return origins


# ------------------------------------------------------------------------------ errors

_SECRET_KEYS: Final = {"api_key", "apikey", "key", "secret", "token", "password", "signing_secret"}
_NUMBER_ERRORS: Final = {
    "finite_number",
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
}
_ITEM_MODELS: Final[dict[str, type[BaseModel]]] = {
    "providers": ProviderConfig,
    "routes": RouteConfig,
    "webhooks": WebhookConfig,
    "sources": SourceConfig,
}


def format_errors(exc: ValidationError, where: str, origins: Mapping[tuple[str, str], str]) -> str:
    """One line per problem: ``<file or variable>: <dotted key>: <problem>``."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        source = origins.get((str(loc[0]), str(loc[1])), where) if len(loc) >= 2 else where
        prefix = f"{source}: {dotted(loc)}: " if loc else f"{source}: "
        text = _message(err["type"], err["msg"], err.get("input"), loc)
        lines += [prefix + line for line in text.splitlines()]
    return "\n".join(lines)


def dotted(loc: tuple[int | str, ...]) -> str:
    """``("routes", 1, "timeout_hours")`` -> ``routes[1].timeout_hours``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "[key]":
            out += f".{part}" if out else part
    return out


def _message(kind: str, msg: str, value: object, loc: tuple[int | str, ...]) -> str:
    if kind == "extra_forbidden":
        name = str(loc[-1])
        if name.lower().replace("-", "_") in _SECRET_KEYS:
            return "unknown key; secrets do not belong here (name a credential, file or variable)"
        if msg.startswith("unknown key"):  # a provider's: worded with its kind's keys
            return msg
        return "unknown key" + closest(name, _fields_at(loc[:-1]))
    msg = msg.removeprefix("Value error, ")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number or (isinstance(value, str) and kind in _NUMBER_ERRORS):  # a number: no secret
        msg += f" (got {value!r})"
    return msg


def _fields_at(parent: tuple[int | str, ...]) -> list[str]:
    """The keys allowed where an unknown key was found (for "did you mean")."""
    if not parent:
        return [name for name in Settings.model_fields if name != "source"]
    model: type[BaseModel] | None = SECTIONS.get(str(parent[0])) if len(parent) == 1 else None
    if len(parent) == 2:
        model = _ITEM_MODELS.get(str(parent[0]))
    return list(model.model_fields) if model is not None else []
