"""``[providers.<name>]``: the common keys, and the keys each kind declares for itself
(``ProviderKind.options``, a ``KindOptions`` model), with the kind's default base URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field

from batchd.providers.base import ProviderLimits
from batchd.providers.emulator_options import EmulatorOptions
from batchd.providers.kind_options import KindOptions, options_of
from batchd.providers.registry import KINDS, ProviderKind, register_kind

from .helpers import error_text, load, problems

ROUTE = "[[routes]]\nname = 'r'\nspool = '/srv/r'\nprovider = 'p'\n"


class ToyOptions(KindOptions):
    """What a new kind declares (as OpenAI's ``organization``, Anthropic's version)."""

    organization: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    flavour: Literal["plain", "fancy"] = "plain"


@pytest.fixture
def toy() -> Iterator[None]:
    """A kind registered the way a new provider registers (its module, one line)."""
    register_kind(
        ProviderKind(
            "toy",
            "batchd.providers.mistral:open_mistral",  # (not opened here)
            key_env="TOY_API_KEY",
            base_url="https://api.toy.example/v1",
            options=f"{__name__}:ToyOptions",
            endpoints=("/v1/toys",),
            limits=ProviderLimits(max_requests_per_job=50_000, max_bytes_per_job=200_000_000),
        )
    )
    yield
    del KINDS["toy"]


def test_a_kind_s_own_keys_reach_its_settings_validated(tmp_path: Path, toy: None) -> None:
    text = "[providers.p]\nkind = 'toy'\norganization = 'org-1'\nflavour = 'fancy'\n" + ROUTE
    text += "endpoint = '/v1/toys'\n"
    ps = load(tmp_path, text, TOY_API_KEY="t-123456789").provider_settings("p")
    assert ps.options == ToyOptions(organization="org-1", flavour="fancy")
    assert options_of(ps, ToyOptions).flavour == "fancy"
    assert ps.base_url == "https://api.toy.example/v1"  # the kind's default
    assert ps.api_key is not None and ps.api_key.reveal() == "t-123456789"  # its variable


def test_a_kind_s_key_is_checked_and_the_error_names_it(tmp_path: Path, toy: None) -> None:
    text = "[providers.p]\nkind = 'toy'\nflavour = 'odd'\n" + ROUTE
    assert [k for _, k in problems(tmp_path, text)] == ["providers.p.flavour"]


def test_another_kind_s_key_is_an_error_naming_the_key_the_provider_and_the_kind(
    tmp_path: Path, toy: None
) -> None:
    text = "[providers.p]\nkind = 'mistral'\norganization = 'org-1'\n" + ROUTE
    message = error_text(tmp_path, text, MISTRAL_API_KEY="k-123456789")
    assert "providers.p.organization: unknown key for kind 'mistral'" in message
    text = "[providers.p]\nkind = 'toy'\nemulator_speed = 5\n" + ROUTE
    assert "providers.p.emulator_speed: unknown key for kind 'toy'" in error_text(tmp_path, text)


def test_a_misspelt_key_gets_a_hint_from_the_kind_s_keys_too(tmp_path: Path) -> None:
    text = "[providers.p]\nkind = 'emulator'\nemulator_sped = 5\n" + ROUTE
    assert "did you mean 'emulator_speed'?" in error_text(tmp_path, text)


def test_base_url_defaults_to_the_kind_s(tmp_path: Path) -> None:
    text = "[providers.p]\nkind = 'mistral'\n" + ROUTE
    ps = load(tmp_path, text, MISTRAL_API_KEY="k-123456789").provider_settings("p")
    assert ps.base_url == "https://api.mistral.ai"
    given = "[providers.p]\nkind = 'mistral'\nbase_url = 'https://api.eu.mistral.ai/'\n" + ROUTE
    ps = load(tmp_path, given, MISTRAL_API_KEY="k-123456789").provider_settings("p")
    assert ps.base_url == "https://api.eu.mistral.ai"


def test_the_emulator_s_settings_are_its_own_and_default_when_absent(tmp_path: Path) -> None:
    ps = load(tmp_path, "[providers.p]\nkind = 'emulator'\n" + ROUTE).provider_settings("p")
    assert ps.options == EmulatorOptions() and ps.base_url == ""
    with pytest.raises(TypeError):
        options_of(ps, ToyOptions)


def test_a_route_names_an_endpoint_its_provider_s_kind_serves(tmp_path: Path, toy: None) -> None:
    toys = "[providers.p]\nkind = 'toy'\n" + ROUTE + "endpoint = '/v1/toys'\n"
    assert load(tmp_path, toys).routes[0].endpoint == "/v1/toys"
    mistral = "[providers.p]\nkind = 'mistral'\n" + ROUTE + "endpoint = '/v1/toys'\n"
    message = error_text(tmp_path, mistral, MISTRAL_API_KEY="k-123456789")
    assert "routes[0].endpoint: '/v1/toys' is not an endpoint of kind 'mistral'" in message


def test_an_endpoint_no_kind_serves_is_refused(tmp_path: Path) -> None:
    text = "[providers.p]\nkind = 'emulator'\n" + ROUTE + "endpoint = '/v1/toys'\n"
    assert [k for _, k in problems(tmp_path, text)] == ["routes[0].endpoint"]
    assert "unknown endpoint '/v1/toys'" in error_text(tmp_path, text)


def test_job_limits_default_to_the_kind_s_and_cannot_exceed_them(tmp_path: Path, toy: None) -> None:
    toys = "[providers.p]\nkind = 'toy'\n" + ROUTE + "endpoint = '/v1/toys'\n"
    limits = load(tmp_path, toys, TOY_API_KEY="t-123456789").provider_settings("p").limits
    assert (limits.max_requests_per_job, limits.max_bytes_per_job) == (50_000, 200_000_000)
    fewer = toys.replace("kind = 'toy'\n", "kind = 'toy'\nmax_requests_per_job = 10\n")
    settings = load(tmp_path, fewer, TOY_API_KEY="t-123456789")
    assert settings.provider_settings("p").limits.max_requests_per_job == 10
    more = toys.replace("kind = 'toy'\n", "kind = 'toy'\nmax_bytes_per_job = 300_000_000\n")
    message = error_text(tmp_path, more)
    assert "providers.p.max_bytes_per_job: at most 200_000_000 for kind 'toy'" in message
