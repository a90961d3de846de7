"""API keys and webhook secrets: sources, their order, file checks, and never showing them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from batchd.config_load import load_settings
from batchd.credentials import SecretSpec, file_problem
from batchd.errors import ConfigError
from batchd.webhooks.signing import new_secret

from .helpers import env, load, problems, write

CANARY = "sk-canary-7f3a9c1e5d2b4a6f8e0c"
MISTRAL = "[providers.mistral]\n[[routes]]\nname = 'r'\nspool = '/srv/r'\nprovider = 'mistral'\n"


def private_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def key_of(tmp_path: Path, text: str = MISTRAL, **extra: str) -> str:
    key = load(tmp_path, text, **extra).provider_settings().api_key
    assert key is not None
    return key.reveal()


# ------------------------------------------------------------------------------ API keys


def test_credential_file_first(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mistral_api_key").write_text("from-credential\n")
    file = private_file(tmp_path / "key", "from-file")
    text = MISTRAL.replace("[providers.mistral]", f"[providers.mistral]\napi_key_file = '{file}'")
    assert key_of(tmp_path, text, CREDENTIALS_DIRECTORY=str(creds), MISTRAL_API_KEY="env") == (
        "from-credential"
    )
    assert key_of(tmp_path, text, MISTRAL_API_KEY="from-env") == "from-file"
    assert (
        key_of(
            tmp_path,
            MISTRAL,
            CREDENTIALS_DIRECTORY=str(tmp_path / "none"),
            MISTRAL_API_KEY="from-env",
        )
        == "from-env"
    )


def test_credential_name_and_variable_are_configurable(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "prod_key").write_text("k1")
    text = MISTRAL.replace(
        "[providers.mistral]", "[providers.mistral]\napi_key_credential = 'prod_key'"
    )
    assert key_of(tmp_path, text, CREDENTIALS_DIRECTORY=str(creds)) == "k1"
    text = MISTRAL.replace("[providers.mistral]", "[providers.mistral]\napi_key_env = 'DEV_KEY'")
    assert key_of(tmp_path, text, DEV_KEY="k2", MISTRAL_API_KEY="not-this") == "k2"


def test_default_credential_follows_the_provider_name(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "eu_api_key").write_text("k-eu")
    text = MISTRAL.replace("mistral", "eu")
    assert key_of(tmp_path, text, CREDENTIALS_DIRECTORY=str(creds)) == "k-eu"


@pytest.mark.parametrize(("raw", "key"), [("abc\n", "abc"), ("abc\r\n", "abc"), ("abc", "abc")])
def test_one_trailing_newline_is_stripped(tmp_path: Path, raw: str, key: str) -> None:
    file = private_file(tmp_path / "key", raw)
    text = MISTRAL.replace("[providers.mistral]", f"[providers.mistral]\napi_key_file = '{file}'")
    assert key_of(tmp_path, text) == key


def test_a_key_is_read_once_per_load(tmp_path: Path) -> None:
    file = private_file(tmp_path / "key", "first-key")
    text = MISTRAL.replace("[providers.mistral]", f"[providers.mistral]\napi_key_file = '{file}'")
    settings = load(tmp_path, text)
    first = settings.provider_settings()
    file.write_text("second-key")  # rotated: only a reload (a new load) reads it
    assert settings.provider_settings() is first
    key = load(tmp_path, text).provider_settings().api_key
    assert key is not None and key.reveal() == "second-key"


@pytest.mark.parametrize("raw", ["", "\n", "ab c", "abc\n\n", "a\tb"])
def test_empty_or_broken_keys_are_refused(tmp_path: Path, raw: str) -> None:
    file = private_file(tmp_path / "key", raw)
    text = MISTRAL.replace("[providers.mistral]", f"[providers.mistral]\napi_key_file = '{file}'")
    with pytest.raises(ConfigError, match=r"providers\.mistral"):
        load(tmp_path, text).provider_settings()


def test_a_mistral_provider_without_a_key_is_a_config_error(tmp_path: Path) -> None:
    settings = load(tmp_path, MISTRAL)  # loading works: commands that need no key still run
    with pytest.raises(ConfigError) as info:
        settings.provider_settings()
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'batchd.toml'}: providers.mistral")
    assert "$CREDENTIALS_DIRECTORY/mistral_api_key" in message and "$MISTRAL_API_KEY" in message


def test_the_emulator_ignores_mistral_api_key(tmp_path: Path) -> None:
    settings = load_settings(environ=env(tmp_path, MISTRAL_API_KEY=CANARY))
    assert settings.provider_settings("emulator").api_key is None


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    file = private_file(tmp_path / "key", CANARY, mode)
    text = MISTRAL.replace("[providers.mistral]", f"[providers.mistral]\napi_key_file = '{file}'")
    with pytest.raises(ConfigError, match="0600") as info:
        load(tmp_path, text).provider_settings()
    assert CANARY not in str(info.value)


@pytest.mark.parametrize("what", ["missing", "directory", "fifo"])
def test_a_key_file_must_be_a_regular_file(tmp_path: Path, what: str) -> None:
    target = tmp_path / "key"
    if what == "directory":
        target.mkdir()
    elif what == "fifo":
        os.mkfifo(target, 0o600)
    text = MISTRAL.replace("[providers.mistral]", f"[providers.mistral]\napi_key_file = '{target}'")
    with pytest.raises(ConfigError, match=str(target)):
        load(tmp_path, text).provider_settings()


def test_file_problem_rules() -> None:
    def info(mode: int, uid: int) -> os.stat_result:
        return os.stat_result((mode, 0, 0, 1, uid, 0, 10, 0, 0, 0))

    me = os.geteuid()
    assert file_problem(info(stat.S_IFREG | 0o600, me), private=True) is None
    assert file_problem(info(stat.S_IFREG | 0o400, me), private=True) is None
    assert file_problem(info(stat.S_IFREG | 0o600, me + 1), private=True) is not None
    assert file_problem(info(stat.S_IFREG | 0o640, me), private=True) is not None
    assert file_problem(info(stat.S_IFREG | 0o644, me + 1), private=False) is None
    assert file_problem(info(stat.S_IFDIR | 0o700, me), private=False) is not None


def test_secret_spec_lists_where_it_looked() -> None:
    spec = SecretSpec("x", credential="c", file=Path("/f"), env="E")
    assert spec.places() == "$CREDENTIALS_DIRECTORY/c, /f, $E"


# ------------------------------------------------------------------------------ never shown


def test_keys_never_appear_in_repr_dump_or_errors(tmp_path: Path) -> None:
    settings = load(tmp_path, MISTRAL, MISTRAL_API_KEY=CANARY)
    provider = settings.provider_settings()
    assert provider.api_key is not None and provider.api_key.reveal() == CANARY
    for text in (repr(settings), str(settings), str(settings.model_dump()), repr(provider)):
        assert CANARY not in text


@pytest.mark.parametrize(
    "line",
    [f"api_key = '{CANARY}'", f"api_key_env = '{CANARY}'", f"api_key_credential = '{CANARY}/x'"],
)
def test_a_key_pasted_into_the_file_is_not_echoed(tmp_path: Path, line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"[providers.mistral]\n{line}\n")
    assert CANARY not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_a_pasted_key_gets_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="secrets do not belong"):
        load(tmp_path, f"[providers.mistral]\napi_key = '{CANARY}'\n")


# ------------------------------------------------------------------------------ webhooks


def hook(**fields: str) -> str:
    """A [[webhooks]] table; values are TOML text, except url/name/secret_* (quoted here)."""
    base = {"name": "ops", "url": "https://hooks.example.com/batchd"} | fields
    quoted = {"name", "url", "secret", "secret_file", "secret_env", "secret_credential"}
    lines = [f"{k} = {v!r}" if k in quoted else f"{k} = {v}" for k, v in base.items()]
    return "[[webhooks]]\n" + "\n".join(lines) + "\n"


def test_webhook_endpoint_with_rotation(tmp_path: Path) -> None:
    new, old = new_secret(), new_secret()
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "webhook_ops").write_text(f"# rotated 2025-01-01\n{new}\n\n{old}\n")
    text = hook(events='["batch.*", "results.ready"]', timeout_s="5", max_concurrency="2")
    [endpoint] = load(tmp_path, text, CREDENTIALS_DIRECTORY=str(creds)).webhook_endpoints()
    assert [s.reveal() for s in endpoint.secrets] == [new, old]
    assert endpoint.name == "ops" and endpoint.url == "https://hooks.example.com/batchd"
    assert endpoint.events == ("batch.*", "results.ready")
    assert (endpoint.timeout_s, endpoint.max_concurrency) == (5, 2)
    assert (endpoint.allow_http, endpoint.allow_private, endpoint.max_response_bytes) == (
        False,
        False,
        65536,
    )
    assert new not in repr(endpoint)


def test_webhook_secret_from_file_and_env(tmp_path: Path) -> None:
    secret = new_secret()
    file = private_file(tmp_path / "hook", secret + "\n")
    [endpoint] = load(tmp_path, hook(secret_file=str(file))).webhook_endpoints()
    assert [s.reveal() for s in endpoint.secrets] == [secret]
    [endpoint] = load(
        tmp_path, hook(secret_env="HOOK_SECRET"), HOOK_SECRET=secret
    ).webhook_endpoints()
    assert [s.reveal() for s in endpoint.secrets] == [secret]


@pytest.mark.parametrize(
    "content", ["whsec_dG9vc2hvcnQ=", "not base64 at all!", "# only a comment\n"]
)
def test_bad_webhook_secrets_are_refused_without_echo(tmp_path: Path, content: str) -> None:
    file = private_file(tmp_path / "hook", content)
    settings = load(tmp_path, hook(secret_file=str(file)))
    with pytest.raises(ConfigError) as info:
        settings.webhook_endpoints()
    assert str(info.value).startswith(f"{tmp_path / 'batchd.toml'}: webhooks[0] (ops)")
    assert content.strip() not in str(info.value) or content.startswith("#")


def test_a_webhook_without_secret_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"webhook_ops"):
        load(tmp_path, hook()).webhook_endpoints()


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"url": "http://hooks.example.com/x"}, False),
        ({"url": "http://hooks.example.com/x", "allow_http": "true"}, True),
        ({"url": "https://127.0.0.1/x"}, False),
        ({"url": "https://169.254.169.254/x"}, False),
        ({"url": "https://localhost/x"}, False),
        ({"url": "http://127.0.0.1:9/x", "allow_http": "true", "allow_private": "true"}, True),
        ({"url": "ftp://hooks.example.com/x"}, False),
    ],
)
def test_webhook_urls_are_checked_at_load(tmp_path: Path, fields: dict[str, str], ok: bool) -> None:
    if ok:
        assert len(load(tmp_path, hook(**fields)).webhooks) == 1
    else:
        assert [k for _, k in problems(tmp_path, hook(**fields))] == ["webhooks[0].url"]


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"events": "[]"}, "webhooks[0].events"),
        ({"timeout_s": "0"}, "webhooks[0].timeout_s"),
        ({"max_concurrency": "0"}, "webhooks[0].max_concurrency"),
        ({"secret": CANARY}, "webhooks[0].secret"),
    ],
)
def test_webhook_rules(tmp_path: Path, fields: dict[str, str], key: str) -> None:
    assert [k for _, k in problems(tmp_path, hook(**fields))] == [key]


def test_webhook_names_are_unique(tmp_path: Path) -> None:
    assert [k for _, k in problems(tmp_path, hook() + hook())] == ["webhooks[1].name"]


def test_secret_env_names_cover_providers_and_webhooks(tmp_path: Path) -> None:
    settings = load(tmp_path, MISTRAL + hook(secret_env="HOOK"))
    assert settings.secret_env_names() == {"MISTRAL_API_KEY", "HOOK"}


def test_unused_write_helper_is_importable(tmp_path: Path) -> None:
    assert write(tmp_path, "", "x.toml").exists()
