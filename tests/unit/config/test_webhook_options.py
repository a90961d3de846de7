"""``[[webhooks]]`` options checked at load: event patterns must match an event type, and the
retry ladder may be shortened (validated) for a test environment; the default is unchanged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from batchd.errors import ConfigError
from batchd.event_types import EVENT_TYPES
from batchd.webhooks.endpoint import WebhookEndpoint
from batchd.webhooks.schedule import STANDARD, RetryLadder

from .helpers import load
from .test_secrets import hook

SECRET_ENV = {"HOOK_SECRET": "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"}


def endpoint_of(tmp_path: Path, **fields: str) -> WebhookEndpoint:
    text = hook(secret_env="HOOK_SECRET", **fields)
    [endpoint] = load(tmp_path, text, **SECRET_ENV).webhook_endpoints()
    return endpoint


def test_an_event_pattern_that_matches_nothing_is_refused_naming_the_key(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, hook(events='["submission.done", "results.redy", "batch.*"]'))
    text = str(info.value)
    assert "webhooks[0].events: 'submission.done' matches no event type" in text
    # what a user means by it, not the nearest spelling ('submission.abandoned')
    assert "'submission.done' matches no event type; did you mean 'results.ready'?" in text
    assert "'results.redy' matches no event type; did you mean 'results.ready'?" in text
    assert "'batch.*'" not in text
    assert "results.unavailable" in text  # the known types are listed


@pytest.mark.parametrize("pattern", ["*", "batch.*", "results.ready", "webhook.dead_letter"])
def test_patterns_that_match_are_accepted(tmp_path: Path, pattern: str):
    assert endpoint_of(tmp_path, events=f'["{pattern}"]').events == (pattern,)


def test_the_default_retry_ladder_is_standard_webhooks(tmp_path: Path):
    assert endpoint_of(tmp_path).retry == STANDARD
    assert STANDARD.max_attempts == 10 and STANDARD.min_span_s == 72 * 3600


def test_a_test_environment_can_shorten_the_ladder(tmp_path: Path):
    endpoint = endpoint_of(tmp_path, retry_delays_s="[1.0, 2.0]", min_retry_span_s="0")
    assert endpoint.retry == RetryLadder((1.0, 2.0), 0.0)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"retry_delays_s": "[1.0, 2.0]"}, "min_retry_span_s (259200 s) is longer than"),
        ({"retry_delays_s": "[0]"}, "retry_delays_s[0]: Input should be greater than 0"),
        ({"retry_delays_s": "[1.0]", "min_retry_span_s": "-1"}, "min_retry_span_s: Input"),
    ],
)
def test_a_bad_ladder_is_refused(tmp_path: Path, fields: dict[str, str], problem: str):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, hook(**fields))
    assert problem in str(info.value)
    assert "webhooks[0]" in str(info.value)


def test_every_event_the_code_emits_is_known():
    """The list that patterns are checked against names every event type in the source."""
    root = Path(__file__).resolve().parents[3] / "batchd"
    emitted: set[str] = set()
    for path in root.rglob("*.py"):
        text = path.read_text()
        emitted |= set(re.findall(r'EventSpec\(\s*"([a-z_]+\.[a-z_]+)"', text))
        emitted |= set(re.findall(r'^[A-Z_]+ = "((?:webhook|batch)\.[a-z_]+)"$', text, re.M))
    from batchd.models import JobState, event_type_for

    emitted |= {t for s in JobState if (t := event_type_for(s))}
    assert emitted and emitted <= EVENT_TYPES, sorted(emitted - EVENT_TYPES)


def test_the_readme_lists_every_event_type():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    missing = [t for t in sorted(EVENT_TYPES - {"webhook.test"}) if f"`{t}`" not in readme]
    assert missing == []
