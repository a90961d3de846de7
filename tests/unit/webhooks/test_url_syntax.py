"""A webhook host is checked as the resolver would read it: no percent-encoding, no NUL or
control character, strict IDNA (issue 13, item 8). Refused at load, with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchd.config_load import load_settings
from batchd.errors import ConfigError, WebhookError
from batchd.webhooks.urls import check_url

REFUSED = [
    ("https://%31%32%37.0.0.1/hook", "percent-encoded (it decodes to '127.0.0.1')"),
    ("https://hooks%2eexample.com/hook", "percent-encoded (it decodes to 'hooks.example.com')"),
    ("https://localhost%00.example.com/hook", "NUL, control or space character"),
    ("https://hooks%0a.example.com/hook", "NUL, control or space character"),
    ("https://hooks%09.example.com/hook", "NUL, control or space character"),
    ("https://xn--localhost-/hook", "'xn--localhost-' is not a valid internationalized name"),
    ("https://xn--localhost-.example.com/", "'xn--localhost-' is not a valid internationalized"),
    ("https://xn--a.example.com/hook", "'xn--a' is not a valid internationalized name (IDNA)"),
    ("https://-hooks.example.com/hook", "label '-hooks' is not 1-63 letters"),
    ("https://hooks..example.com/hook", "label '' is not 1-63 letters"),
    (f"https://{'a' * 64}.example.com/hook", "is not 1-63 letters"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
@pytest.mark.parametrize("allow_private", [False, True])
def test_a_disguised_host_is_refused(url: str, reason: str, allow_private: bool) -> None:
    with pytest.raises(WebhookError) as info:
        check_url(url, allow_http=False, allow_private=allow_private)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.ex\tample.com/hook",  # a parser drops it: the host would be another
        "https://hooks.example.com\n/hook",
        "https://hooks.example.com/ho\rok",
        "https://hooks.example.com/hook\x00",
        "https://hooks.example.com/hook\x7f",
    ],
)
def test_a_raw_control_character_anywhere_is_refused(url: str) -> None:
    with pytest.raises(WebhookError, match="webhook url contains a control character"):
        check_url(url, allow_http=False, allow_private=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/x",
        "https://xn--bcher-kva.example/x",  # bücher.example, a valid A-label
        "https://Bücher.example/x",  # written in Unicode: yarl encodes it to the A-label
        "https://r3---sn-abc.example.com/x",  # '--' inside a label is fine outside xn--
        "https://hooks.example.com./x",
        "https://_dmarc.example.com/x",
    ],
)
def test_plain_and_international_names_pass(url: str) -> None:
    check_url(url, allow_http=False, allow_private=False)


@pytest.mark.parametrize(("url", "reason"), REFUSED[:6])
def test_the_configuration_refuses_them_at_load(tmp_path: Path, url: str, reason: str) -> None:
    path = tmp_path / "batchd.toml"
    path.write_text(f'[[webhooks]]\nname = "ops"\nurl = "{url}"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={"HOME": str(tmp_path)})
    assert str(info.value).startswith(f"{path}: webhooks[0].url: webhook host ")
    assert reason in str(info.value)
