"""A provider kind's own settings: the keys of ``[providers.<name>]`` beyond the common ones.

A kind that has some declares a ``KindOptions`` subclass (a small pydantic model: its keys,
defaults, ranges) and names it in its ``ProviderKind`` (``options="module:Class"``).
Configuration validates a provider's extra keys against its kind's model (an unknown key is an
error naming the key, the provider and its kind) and hands the validated model to the opener as
``ProviderSettings.options``; the opener reads it with ``options_of``.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from batchd.providers.base import ProviderSettings


class KindOptions(BaseModel):
    """The base of every kind's settings model: frozen (settings are compared on reload),
    unknown keys refused, numbers finite. Give every key a default (a provider configured
    without it, or settings built by hand, get the defaults) and every number a documented
    range (``config/batchd.toml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


OptionsT = TypeVar("OptionsT", bound=KindOptions)


def options_of(settings: ProviderSettings, model: type[OptionsT]) -> OptionsT:
    """The kind's settings of ``settings`` (its defaults when none were given, as for settings
    built by hand); ``TypeError`` when they are another kind's."""
    if settings.options is None:
        return model()
    if not isinstance(settings.options, model):
        raise TypeError(
            f"provider {settings.name!r}: settings of {type(settings.options).__name__}, "
            f"not {model.__name__}"
        )
    return settings.options
