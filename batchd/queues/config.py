"""``[[sources]]``: queue sources (RabbitMQ queues, Redis streams) and their broker secrets.

Validated with the rest of the configuration (``batchd.config.Settings.sources``). The URL in
the file names the broker without a password; the password is a secret like an API key, read
from ``$CREDENTIALS_DIRECTORY/<password_credential>`` (default ``<name>_password``), a 0600
``password_file`` or a ``password_env`` variable (``batchd.credentials``), and put into the URL
only when connecting (``broker_url``), never logged (``describe`` shows the URL without it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Final, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from batchd.credentials import SecretSources, SecretSpec, resolve_secret
from batchd.errors import ConfigError
from batchd.secret import Secret

MiB: Final = 1024 * 1024
SCHEMES: Final = {"amqp": ("amqp", "amqps"), "redis": ("redis", "rediss")}
SourceName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Destination = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$")]
CredentialName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
VarName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


class SourceConfig(BaseModel):
    """One queue source. Requests accumulate per route and are flushed as one submission at
    ``max_requests``, ``max_bytes`` or ``max_wait_s`` (defaults that suit a 24-hour batch
    window), or when ``prefetch`` messages wait unacknowledged."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: SourceName
    kind: Literal["amqp", "redis"]
    url: str
    password_credential: CredentialName | None = None  # default "<name>_password"
    password_file: Path | None = None
    password_env: VarName | None = None
    queue: Destination  # the AMQP queue, or the Redis stream
    route: SourceName | None = None  # for messages that name none
    dead_letter: Destination | None = None  # default "<queue>.dead"
    results: Destination | None = None  # default "<queue>.results"
    group: Destination = "batchd"  # Redis consumer group
    prefetch: Annotated[int, Field(ge=1, le=65_535)] = 10_000
    max_requests: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    max_bytes: Annotated[int, Field(ge=1024, le=512 * MiB)] = 100 * MiB
    max_wait_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    max_request_bytes: Annotated[int, Field(ge=256, le=64 * MiB)] = MiB
    reconnect_max_s: Annotated[float, Field(ge=1, le=3600)] = 60.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.password:
            raise ValueError(
                "must not contain a password: put it in a credential, password_file or password_env"
            )
        if not parts.hostname or parts.scheme not in {s for v in SCHEMES.values() for s in v}:
            raise ValueError("must be an amqp(s):// or redis(s):// URL with a host")
        return value

    @model_validator(mode="after")
    def _scheme_matches_kind(self) -> SourceConfig:
        if urlsplit(self.url).scheme not in SCHEMES[self.kind]:
            raise ValueError(f"url: a {self.kind} source needs a {SCHEMES[self.kind][0]}:// URL")
        return self

    @property
    def dead_letter_to(self) -> str:
        return self.dead_letter or f"{self.queue}.dead"

    @property
    def results_to(self) -> str:
        return self.results or f"{self.queue}.results"

    def password_spec(self, what: str) -> SecretSpec:
        return SecretSpec(
            what=what,
            credential=self.password_credential or f"{self.name}_password",
            file=self.password_file,
            env=self.password_env,
        )

    def describe(self) -> str:
        """The broker and queue, for messages: never a password."""
        return f"{self.kind} {self.url} {self.queue}"


def broker_url(cfg: SourceConfig, secrets: SecretSources, what: str) -> Secret:
    """The URL to connect with, the password put in (a ``Secret``: never printed). A password
    source named in the file but empty or missing is a ``ConfigError``; with none configured and
    no default credential, the URL is used as it is."""
    spec = cfg.password_spec(what)
    found = resolve_secret(spec, secrets)
    if found is None:
        if cfg.password_file or cfg.password_env or cfg.password_credential:
            raise ConfigError(f"{what}: no broker password found (looked in {spec.places()})")
        return Secret(cfg.url)
    parts = urlsplit(cfg.url)
    user = parts.username or ("guest" if cfg.kind == "amqp" else "default")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(user, safe='')}:{quote(found[0].reveal(), safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return Secret(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))


def source_problems(sources: Sequence[SourceConfig], routes: Sequence[str]) -> list[str]:
    """Unique names, known default routes, and no two sources on one queue of one broker."""
    problems = []
    seen: dict[str, int] = {}
    for i, src in enumerate(sources):
        if src.name in seen:
            problems.append(
                f"sources[{i}].name: {src.name!r} is already used by sources[{seen[src.name]}]"
            )
        seen.setdefault(src.name, i)
        if src.route is not None and src.route not in routes:
            known = ", ".join(routes) or "none"
            problems.append(f"sources[{i}].route: no route named {src.route!r} (known: {known})")
        if src.queue in (src.dead_letter_to, src.results_to):
            problems.append(f"sources[{i}]: dead_letter and results must differ from queue")
    return problems
