"""``[providers.<name>]`` with ``kind = "openai"``: its default base URL and key variable, its
own keys (organisation, project, output expiry), its endpoints and its limits."""

from __future__ import annotations

from pathlib import Path

from batchd.providers.kind_options import options_of
from batchd.providers.openai_options import OpenAISettings

from .helpers import error_text, load, problems

ROUTE = "[[routes]]\nname = 'r'\nspool = '/srv/r'\nprovider = 'p'\nendpoint = '{endpoint}'\n"


def _text(extra: str = "", endpoint: str = "/v1/responses") -> str:
    return "[providers.p]\nkind = 'openai'\n" + extra + ROUTE.format(endpoint=endpoint)


def test_defaults_and_own_keys(tmp_path: Path) -> None:
    text = _text("organization = 'org-1'\nproject = 'proj_2'\noutput_expires_after_s = 7200\n")
    ps = load(tmp_path, text, OPENAI_API_KEY="sk-test-123456789").provider_settings("p")
    assert ps.base_url == "https://api.openai.com/v1"
    assert ps.api_key is not None and ps.api_key.reveal() == "sk-test-123456789"
    assert options_of(ps, OpenAISettings) == OpenAISettings(
        organization="org-1", project="proj_2", output_expires_after_s=7200
    )


def test_limits_stay_within_openai_s(tmp_path: Path) -> None:
    ps = load(tmp_path, _text(), OPENAI_API_KEY="sk-x-123456789").provider_settings("p")
    assert (ps.limits.max_requests_per_job, ps.limits.max_bytes_per_job) == (50_000, 180_000_000)
    assert (ps.limits.max_metadata_key_chars, ps.limits.max_metadata_value_chars) == (64, 512)
    lower = _text("max_requests_per_job = 1000\n")
    ps = load(tmp_path, lower, OPENAI_API_KEY="sk-x-123456789").provider_settings("p")
    assert ps.limits.max_requests_per_job == 1000


def test_bad_keys_and_endpoints_are_named(tmp_path: Path) -> None:
    unknown = _text("organisation = 'x'\n")
    assert [k for _, k in problems(tmp_path, unknown)] == ["providers.p.organisation"]
    too_short = _text("output_expires_after_s = 60\n")
    assert [k for _, k in problems(tmp_path, too_short)] == ["providers.p.output_expires_after_s"]
    wrong_endpoint = _text(endpoint="/v1/ocr")
    assert "not an endpoint of kind 'openai'" in error_text(tmp_path, wrong_endpoint)
