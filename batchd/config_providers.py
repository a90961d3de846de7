"""``[providers.<name>]``: the keys every provider has, the keys of its kind, and the runtime
``ProviderSettings`` they resolve to (API key included).

``ProviderConfig`` holds the common keys. A kind's own keys (the emulator's ``emulator_speed``,
an OpenAI provider's ``organization``...) are declared by the kind (``ProviderKind.options``, a
``KindOptions`` model) and validated against it here; a key neither common nor the kind's is an
error naming the key, the provider and the kind. ``base_url`` defaults to the kind's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

from pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from batchd.config_rules import closest
from batchd.config_types import EnvName, FileName, Model, OptionalPathText, Seconds
from batchd.credentials import SecretSources, SecretSpec, api_key
from batchd.providers.base import ProviderSettings
from batchd.providers.registry import ProviderKind, provider_kind, provider_kinds


class ProviderConfig(Model):
    # extra keys are the kind's own: validated against its model (``_kind_keys``)
    model_config = ConfigDict(frozen=True, extra="allow", allow_inf_nan=False)
    kind: str = "mistral"  # a registered kind (``batchd.providers.registry``)
    base_url: str | None = None  # default: the kind's
    api_key_credential: FileName | None = None  # default "<name>_api_key" (kinds with a key)
    api_key_file: OptionalPathText = None
    api_key_env: EnvName | None = None  # default: the kind's (MISTRAL_API_KEY for mistral)
    requests_per_second: Annotated[float, Field(ge=0, le=10_000)] = 5.0
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    connect_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    download_timeout_s: Seconds = 3600.0
    read_retries: Annotated[int, Field(ge=0, le=100)] = 6
    retry_base_s: Annotated[float, Field(gt=0, le=3600)] = 0.5
    retry_max_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    retry_after_max_s: Seconds = 300.0
    # default: the kind's (``ProviderKind.limits``), which are also the most allowed
    max_requests_per_job: Annotated[int | None, Field(ge=1, le=1_000_000)] = None
    max_bytes_per_job: Annotated[int | None, Field(ge=1, le=512_000_000)] = None
    _ranges = (("retry_base_s", "retry_max_s"),)
    _options: object | None = PrivateAttr(default=None)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_base_url(value)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if provider_kind(value) is None:
            known = ", ".join(repr(k) for k in provider_kinds())
            raise ValueError(f"unknown provider kind {value!r} (known: {known})")
        return value

    @model_validator(mode="after")
    def _kind_keys(self) -> ProviderConfig:
        """The keys beyond the common ones, validated by the kind's model (errors name each
        key: pydantic places them under this provider)."""
        kind = self.kind_info
        extra = dict(self.model_extra or {})
        model = kind.options_model()
        known = set(model.model_fields) if model is not None else set()
        unknown = sorted(set(extra) - known)
        if unknown:
            choices = [*type(self).model_fields, *known]
            raise ValidationError.from_exception_data(
                type(self).__name__, [_unknown(key, kind.name, choices) for key in unknown]
            )
        if model is not None:
            self._options = model.model_validate(extra)
        for key in ("max_requests_per_job", "max_bytes_per_job"):
            value, most = getattr(self, key), getattr(kind.limits, key)
            if value is not None and value > most:
                raise ValidationError.from_exception_data(
                    type(self).__name__, [_too_large(key, kind.name, most)]
                )
        return self

    @property
    def kind_info(self) -> ProviderKind:
        kind = provider_kind(self.kind)
        if kind is None:  # refused by _known_kind
            raise ValueError(f"unknown provider kind {self.kind!r}")
        return kind

    @property
    def options(self) -> object | None:
        """The kind's own settings, validated (None for a kind without any)."""
        return self._options

    def key_spec(self, name: str, what: str) -> SecretSpec:
        kind = self.kind_info
        return SecretSpec(
            what=what,
            credential=self.api_key_credential or (f"{name}_api_key" if kind.needs_key else None),
            file=self.api_key_file,
            env=self.api_key_env or kind.key_env,
        )

    @property
    def needs_key(self) -> bool:
        return self.kind_info.needs_key


def _unknown(key: str, kind: str, choices: list[str]) -> InitErrorDetails:
    # "extra_forbidden", as pydantic's own: config_load words it (a pasted secret's hint)
    context = {"kind": repr(kind), "hint": closest(key, choices)}
    error = PydanticCustomError("extra_forbidden", "unknown key for kind {kind}{hint}", context)
    return InitErrorDetails(type=error, loc=(key,), input=None)


def _too_large(key: str, kind: str, most: int) -> InitErrorDetails:
    context = {"kind": repr(kind), "most": f"{most:_}"}
    error = PydanticCustomError("less_than_equal", "at most {most} for kind {kind}", context)
    return InitErrorDetails(type=error, loc=(key,), input=None)


def check_base_url(value: str) -> str:
    """https, or http to a loopback host only (an API key never crosses a network in clear)."""
    parts = urlsplit(value)
    loopback = parts.hostname in {"localhost", "127.0.0.1", "::1"}
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host")
    if parts.scheme == "http" and not loopback:
        raise ValueError("must use https (http is only allowed for localhost)")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("must not contain credentials, a query or a fragment")
    return value.rstrip("/")


# The common keys that are not runtime settings (the key's sources; the limits, grouped).
_NOT_RUNTIME: Final = {
    "api_key_credential",
    "api_key_file",
    "api_key_env",
    "max_requests_per_job",
    "max_bytes_per_job",
    "base_url",
}


def resolve_provider(
    name: str, cfg: ProviderConfig, where: str, sources: SecretSources
) -> ProviderSettings:
    """The runtime settings of provider ``name``: its API key read (``ConfigError`` when its
    kind needs one and there is none), its base URL defaulted to its kind's, its kind's own
    settings validated."""
    key = api_key(cfg.key_spec(name, f"{where}: providers.{name}"), sources, required=cfg.needs_key)
    fields: dict[str, Any] = {
        k: getattr(cfg, k) for k in type(cfg).model_fields if k not in _NOT_RUNTIME
    }
    kind = cfg.kind_info.limits
    limits = replace(
        kind,
        max_requests_per_job=cfg.max_requests_per_job or kind.max_requests_per_job,
        max_bytes_per_job=cfg.max_bytes_per_job or kind.max_bytes_per_job,
    )
    return ProviderSettings(
        name=name,
        api_key=key,
        limits=limits,
        base_url=cfg.base_url or cfg.kind_info.base_url,
        options=cfg.options,
        **fields,
    )


def endpoint_problem(cfg: ProviderConfig, endpoint: str) -> str | None:
    """Why a route on this provider cannot name ``endpoint`` (None: it can)."""
    kind = cfg.kind_info
    if not kind.endpoints or endpoint in kind.endpoints:
        return None
    return (
        f"{endpoint!r} is not an endpoint of kind {kind.name!r} (its: {', '.join(kind.endpoints)})"
    )
