"""The building blocks of the configuration models (``batchd.config``,
``batchd.config_providers``): the base model and the constrained types every section shares.

Every number has a documented range (config/batchd.toml) and is finite: ``inf``, ``nan`` and
``1e400`` are refused like 99999999999999999999 (``Model`` sets ``allow_inf_nan=False``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Final

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from batchd.providers.registry import MISTRAL_ENDPOINTS, known_endpoints

MiB: Final = 1024 * 1024


def _known_endpoint(value: str) -> str:
    known = known_endpoints()
    if value not in known:
        raise ValueError(f"unknown endpoint {value!r} (known: {', '.join(known)})")
    return value


# An endpoint some registered provider kind serves (``ProviderKind.endpoints``); whether the
# route's provider serves it is checked across sections (``config_providers.endpoint_problem``).
Endpoint = Annotated[str, AfterValidator(_known_endpoint)]
ENDPOINTS: Final = MISTRAL_ENDPOINTS
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
# Every number has a documented range (config/batchd.toml) and is finite: ``inf``, ``nan`` and
# ``1e400`` are refused like 99999999999999999999 (``Model`` sets ``allow_inf_nan=False``).
DAY_S: Final = 86_400
Seconds = Annotated[float, Field(gt=0, le=DAY_S)]
Delay = Annotated[float, Field(ge=0, le=DAY_S)]  # 0: none
Concurrency = Annotated[int, Field(ge=1, le=256)]
MetadataKey = Annotated[str, Field(min_length=1, max_length=32)]
MetadataValue = Annotated[str, Field(min_length=1, max_length=512)]


def _no_reserved_keys(value: dict[str, str]) -> dict[str, str]:
    reserved = sorted(k for k in value if k == "batchd" or k.startswith("batchd_"))
    if reserved:
        raise ValueError(
            f"batchd and keys starting with batchd_ are reserved: {', '.join(reserved)}"
        )
    return value


# A route's or a file's metadata: batchd's own tags (batchd, batchd_*) cannot be set by hand.
Metadata = Annotated[dict[MetadataKey, MetadataValue], AfterValidator(_no_reserved_keys)]


def _printable_word(value: str) -> str:
    if not value.isprintable() or " " in value:
        raise ValueError(
            "must be one word of printable characters (no spaces, control or format characters)"
        )
    return value


# A model name: it is sent to the provider and printed by the CLI, so nothing that could
# reach a terminal as an escape sequence or forge a line.
ModelName = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_printable_word)]


def check_path_text(value: object) -> object:
    """A path given as text must name something: ``""`` would mean the current folder."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty (an empty path would mean the current folder)")
        if "\0" in value:
            raise ValueError("must not contain a NUL character")
    return value


# A path given in the configuration: never empty, never with a NUL (``check_path_text``).
PathText = Annotated[Path, BeforeValidator(check_path_text)]
OptionalPathText = Annotated[Path | None, BeforeValidator(check_path_text)]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
    _ranges: ClassVar[tuple[tuple[str, str], ...]] = ()  # (low, high) keys: high >= low

    @model_validator(mode="after")
    def _check_ranges(self) -> Model:
        for low, high in self._ranges:
            if getattr(self, high) < getattr(self, low):
                raise ValueError(f"{high} must be >= {low}")
        return self
