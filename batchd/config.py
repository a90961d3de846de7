"""The configuration models: ``Settings`` and its sections, validated once, plus secrets.

``batchd.config_load`` builds a ``Settings`` from the TOML file and the ``BATCHD_*`` environment
overrides (``batchd.config_load.load_settings``); the rules across sections are in
``batchd.config_rules``. Secrets (provider API keys, webhook signing
secrets) are not in the file: they are resolved by ``provider_settings()`` /
``webhook_endpoints()`` from ``$CREDENTIALS_DIRECTORY``, a 0600 file or an environment variable
(``batchd.credentials``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from batchd.config_api import ApiSettings
from batchd.config_providers import (
    ProviderConfig,
    check_base_url,
    endpoint_problem,
    resolve_provider,
)
from batchd.config_rules import cross_problems, default_data_dir, fill_defaults
from batchd.config_types import (
    DAY_S,
    ENDPOINTS,
    Concurrency,
    Delay,
    Endpoint,
    EnvName,
    FileName,
    Metadata,
    MiB,
    ModelName,
    Name,
    OptionalPathText,
    PathText,
    Seconds,
    check_path_text,
)
from batchd.config_types import Model as _Model
from batchd.credentials import SecretSources, SecretSpec, webhook_secrets
from batchd.errors import ConfigError, WebhookError
from batchd.providers.base import ProviderSettings
from batchd.queues.config import SourceConfig, broker_url, source_problems
from batchd.secret import Secret
from batchd.store.registry import url_problem
from batchd.webhooks.endpoint import WebhookEndpoint
from batchd.webhooks.schedule import LADDER_S, MIN_SPAN_S, RetryLadder

# Re-exported: the configuration's types and provider models are named from here too.
__all__ = [
    "DAY_S",
    "ENDPOINTS",
    "Endpoint",
    "Metadata",
    "ModelName",
    "ProviderConfig",
    "Settings",
    "check_base_url",
    "check_path_text",
]


class DaemonSettings(_Model):
    data_dir: PathText = Field(default_factory=lambda: default_data_dir(os.environ))
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    shutdown_grace_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    heartbeat_stale_s: Seconds = 60.0
    share_with_group: bool = False
    debug_loggers: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")]] = []

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("debug_loggers", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        """A list, or (from the environment) names separated by commas."""
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()


class StoreSettings(_Model):
    # Set when loaded: default sqlite:///<data_dir>/batchd.sqlite3, relative paths anchored.
    url: str = ""

    @field_validator("url")
    @classmethod
    def _known(cls, value: str) -> str:
        problem = url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class IntakeSettings(_Model):
    scan_interval_s: Seconds = 30.0
    min_age_s: Delay = 2.0
    use_inotify: bool = True
    max_file_bytes: Annotated[int, Field(ge=1, le=1024**4)] = 512 * MiB
    max_line_bytes: Annotated[int, Field(ge=1, le=1024**3)] = MiB
    max_lines: Annotated[int, Field(ge=1, le=100_000_000)] = 1_000_000
    duplicates: Literal["reject", "allow"] = "reject"


class SubmitSettings(_Model):
    concurrency: Concurrency = 4
    retry_base_s: Seconds = 5.0
    retry_max_s: Seconds = 300.0
    reconcile_delay_s: Delay = 5.0
    # How long a provider may still apply a create after its client gave up (beyond timeout_s).
    reconcile_window_s: Delay = 120.0
    _ranges = (("retry_base_s", "retry_max_s"),)


class TrackSettings(_Model):
    concurrency: Concurrency = 8
    poll_initial_s: Seconds = 5.0
    poll_max_s: Seconds = 300.0
    list_threshold: Annotated[int, Field(ge=0, le=1_000_000)] = 10
    rate_limit_slowdown_s: Delay = 30.0
    duplicate_scan_s: Annotated[float, Field(ge=5, le=3600)] = 60.0
    _ranges = (("poll_initial_s", "poll_max_s"),)


class CollectSettings(_Model):
    concurrency: Concurrency = 2
    retry_base_s: Seconds = 5.0
    retry_max_s: Seconds = 600.0
    delete_input_files: bool = True
    delete_result_files: bool = False
    _ranges = (("retry_base_s", "retry_max_s"),)


Days = Annotated[float, Field(ge=0, le=36_500)]  # 0: keep for ever


class RetentionSettings(_Model):
    done_days: Days = 0.0
    events_days: Days = 30.0
    rows_days: Days = 180.0
    interval_s: Annotated[float, Field(ge=60, le=DAY_S)] = 3600.0

    @model_validator(mode="after")
    def _rows_outlive_folders(self) -> RetentionSettings:
        """A finished row says where its done/ folder is: it must outlive the folder."""
        if self.done_days and self.rows_days and self.rows_days < self.done_days:
            raise ValueError("rows_days must be 0 (keep) or >= done_days")
        return self


SECTIONS: Final[dict[str, type[_Model]]] = {
    "daemon": DaemonSettings,
    "store": StoreSettings,
    "intake": IntakeSettings,
    "submit": SubmitSettings,
    "track": TrackSettings,
    "collect": CollectSettings,
    "retention": RetentionSettings,
}


class RouteConfig(_Model):
    name: Name
    # The route's drop folder (relative: under daemon.data_dir). None: a route fed only by
    # another source (a queue, the API), with no drop folder.
    spool: PathText | None = None
    provider: Name
    endpoint: Endpoint = "/v1/chat/completions"
    model: ModelName | None = None
    timeout_hours: Annotated[int, Field(ge=1, le=168)] = 24
    metadata: Metadata = Field(default_factory=dict)

    @field_validator("spool")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        if not value.is_absolute():
            raise ValueError("must be an absolute path (or relative to daemon.data_dir)")
        return Path(os.path.normpath(value))


class WebhookConfig(_Model):
    name: Name
    allow_http: bool = False  # validated before url, which depends on them
    allow_private: bool = False
    url: str
    secret_credential: FileName | None = None  # default "webhook_<name>"
    secret_file: OptionalPathText = None
    secret_env: EnvName | None = None
    events: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = ["*"]
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 15.0
    max_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    max_response_bytes: Annotated[int, Field(ge=0, le=16 * MiB)] = 64 * 1024
    # When to try again after a failed attempt (default: the Standard Webhooks ladder, 72 h).
    retry_delays_s: Annotated[list[Seconds], Field(max_length=30)] = list(LADDER_S)
    min_retry_span_s: Annotated[float, Field(ge=0, le=30 * DAY_S)] = MIN_SPAN_S

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        from batchd.event_types import pattern_problem

        problems = [p for p in map(pattern_problem, value) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _retry_span(self) -> WebhookConfig:
        ladder = sum(self.retry_delays_s)
        if self.min_retry_span_s > ladder:
            raise ValueError(
                f"min_retry_span_s ({self.min_retry_span_s:g} s) is longer than the whole "
                f"retry_delays_s ladder ({ladder:g} s): shorten it too (0: no floor)"
            )
        return self

    def retry_ladder(self) -> RetryLadder:
        return RetryLadder(tuple(self.retry_delays_s), self.min_retry_span_s)

    @field_validator("url")
    @classmethod
    def _safe_url(cls, value: str, info: ValidationInfo) -> str:
        from batchd.webhooks.urls import check_url

        try:
            check_url(
                value,
                allow_http=bool(info.data.get("allow_http")),
                allow_private=bool(info.data.get("allow_private")),
            )
        except WebhookError as exc:
            raise ValueError(str(exc)) from None
        return value

    def secret_spec(self, what: str) -> SecretSpec:
        return SecretSpec(
            what=what,
            credential=self.secret_credential or f"webhook_{self.name}",
            file=self.secret_file,
            env=self.secret_env,
        )


class Settings(_Model):
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    submit: SubmitSettings = Field(default_factory=SubmitSettings)
    track: TrackSettings = Field(default_factory=TrackSettings)
    collect: CollectSettings = Field(default_factory=CollectSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    providers: dict[Name, ProviderConfig] = Field(default_factory=dict)
    routes: list[RouteConfig] = Field(default_factory=list)
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    sources: list[SourceConfig] = Field(default_factory=list)  # queues (batchd.queues)
    api: ApiSettings = Field(default_factory=ApiSettings)
    source: Path | None = None
    _secrets: SecretSources | None = PrivateAttr(default=None)
    _resolved: dict[str, ProviderSettings] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        return fill_defaults(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        problems = cross_problems(self.routes, self.webhooks, self.providers)
        for i, route in enumerate(self.routes):
            cfg = self.providers.get(route.provider)
            problem = endpoint_problem(cfg, route.endpoint) if cfg is not None else None
            if problem:
                problems.append(f"routes[{i}].endpoint: {problem} (provider {route.provider!r})")
        problems += source_problems(self.sources, [r.name for r in self.routes])
        if problems:
            raise ValueError("\n".join(problems))
        return self

    # -------------------------------------------------------------- runtime views
    @property
    def where(self) -> str:
        return str(self.source) if self.source else "built-in configuration"

    def route(self, name: str) -> RouteConfig:
        for route in self.routes:
            if route.name == name:
                return route
        known = ", ".join(r.name for r in self.routes)
        raise ConfigError(f"{self.where}: routes: no route named {name!r} (known: {known})")

    def provider_settings(self, name: str | None = None) -> ProviderSettings:
        """The runtime settings of one provider, its API key resolved (the first route's
        provider when ``name`` is None). ``ConfigError`` when its kind needs a key and it has
        none. Resolved once per load: later calls return the same settings, key included, so that a
        reload compares what was loaded then with what is loaded now."""
        name = name or self.routes[0].provider
        if name not in self._resolved:
            self._resolved[name] = self._resolve_provider(name)
        return self._resolved[name]

    def _resolve_provider(self, name: str) -> ProviderSettings:
        cfg = self.providers.get(name)
        if cfg is None:
            raise ConfigError(f"{self.where}: providers.{name}: no such provider")
        return resolve_provider(name, cfg, self.where, self._sources())

    def webhook_endpoints(self) -> list[WebhookEndpoint]:
        """Every webhook with its signing secrets resolved (newest first)."""
        endpoints = []
        for i, hook in enumerate(self.webhooks):
            spec = hook.secret_spec(f"{self.where}: webhooks[{i}] ({hook.name})")
            secrets = webhook_secrets(spec, self._sources())
            fields = hook.model_dump(exclude=_NOT_RUNTIME | _LADDER | {"events"})
            endpoints.append(
                WebhookEndpoint(
                    secrets=secrets,
                    events=tuple(hook.events),
                    retry=hook.retry_ladder(),
                    **fields,
                )
            )
        return endpoints

    def source_url(self, index: int) -> Secret:
        """``sources[index]``'s broker URL with its password (``batchd.queues.config``)."""
        src = self.sources[index]
        return broker_url(src, self._sources(), f"{self.where}: sources[{index}] ({src.name})")

    def secret_env_names(self) -> set[str]:
        """The environment variables secrets may be read from."""
        names = {cfg.key_spec(n, n).env for n, cfg in self.providers.items()}
        names |= {hook.secret_env for hook in self.webhooks}
        names |= {src.password_env for src in self.sources}
        return {n for n in names if n}

    def capture_secret_sources(self, environ: Mapping[str, str]) -> SecretSources:
        """Read the secret variables from ``environ`` now (at load) rather than from
        ``os.environ`` at first use."""
        self._secrets = SecretSources.capture(environ, self.secret_env_names())
        return self._secrets

    def _sources(self) -> SecretSources:
        if self._secrets is None:
            return self.capture_secret_sources(os.environ)
        return self._secrets


_LADDER: Final = {"retry_delays_s", "min_retry_span_s"}
_NOT_RUNTIME: Final = {"secret_credential", "secret_file", "secret_env"}
