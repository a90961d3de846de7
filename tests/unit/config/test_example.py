"""config/batchd.toml is complete, states the defaults, and its examples are valid."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from batchd.config import (
    CollectSettings,
    DaemonSettings,
    IntakeSettings,
    ProviderConfig,
    RetentionSettings,
    RouteConfig,
    StoreSettings,
    SubmitSettings,
    TrackSettings,
    WebhookConfig,
)
from batchd.config_api import ApiSettings
from batchd.config_load import load_settings
from batchd.providers.emulator_options import EmulatorOptions
from batchd.providers.registry import KINDS
from batchd.webhooks.signing import new_secret

from .helpers import env

# Every registered kind's own keys are documented in the example too.
KIND_OPTIONS = [m for m in (k.options_model() for k in KINDS.values()) if m is not None]
EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "batchd.toml"
BLOCK = re.compile(r"^# ---- example: .*? ----\n(.*?)^# ---- end ----\n", re.MULTILINE | re.DOTALL)


def uncommented() -> str:
    text = EXAMPLE.read_text()
    blocks = BLOCK.findall(text)
    assert len(blocks) == 3
    return text + "\n".join(re.sub(r"^# ?", "", block, flags=re.MULTILINE) for block in blocks)


def test_the_example_loads_and_states_the_defaults(tmp_path: Path) -> None:
    settings = load_settings(EXAMPLE, environ=env(tmp_path))
    assert settings.daemon == DaemonSettings(data_dir=settings.daemon.data_dir)
    assert (settings.intake, settings.submit, settings.track, settings.collect) == (
        IntakeSettings(),
        SubmitSettings(),
        TrackSettings(),
        CollectSettings(),
    )
    (emulator,) = settings.providers.values()
    common = emulator.model_dump(exclude=set(emulator.model_extra or {}))
    assert common == ProviderConfig(kind="emulator").model_dump()
    assert emulator.options == EmulatorOptions()  # the kind's own keys, at their defaults
    assert settings.routes == [
        RouteConfig(name="default", spool=Path("/srv/batchd"), provider="emulator")
    ]
    assert settings.webhooks == []
    assert settings.retention == RetentionSettings()
    assert settings.api == ApiSettings()
    assert settings.store.url == f"sqlite:///{settings.daemon.data_dir}/batchd.sqlite3"


@pytest.mark.parametrize(
    "model",
    [
        DaemonSettings,
        StoreSettings,
        IntakeSettings,
        SubmitSettings,
        TrackSettings,
        CollectSettings,
        RetentionSettings,
        ProviderConfig,
        RouteConfig,
        WebhookConfig,
        *KIND_OPTIONS,
        ApiSettings,
    ],
)
def test_every_key_is_in_the_example(model: type[BaseModel]) -> None:
    text = EXAMPLE.read_text()
    missing = [
        key
        for key in model.model_fields
        if not re.search(rf"^(# )*{key} = ", text, flags=re.MULTILINE)
    ]
    assert missing == []


def test_every_key_has_its_own_comment() -> None:
    lines = BLOCK.sub("", EXAMPLE.read_text()).splitlines()
    key = re.compile(r"^(# )?[a-z_]+ = ")
    uncommented = [
        line
        for above, line in itertools.pairwise(lines)
        if key.match(line) and (not above.startswith("# ") or key.match(above))
    ]
    assert uncommented == []


def test_the_commented_examples_are_valid(tmp_path: Path) -> None:
    path = tmp_path / "batchd.toml"
    path.write_text(uncommented())
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mistral_api_key").write_text("k-1234567890\n")
    (creds / "webhook_secret").write_text(new_secret() + "\n")
    settings = load_settings(path, environ=env(tmp_path, CREDENTIALS_DIRECTORY=str(creds)))
    assert [r.name for r in settings.routes] == ["default", "ocr"]
    assert settings.provider_settings("mistral").api_key is not None
    assert [e.name for e in settings.webhook_endpoints()] == ["ops"]
