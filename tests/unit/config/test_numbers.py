"""Every number in the configuration is finite and within the range config/batchd.toml states
above its key; every path names something. The error names the key (issue 13, items 3-4)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import annotated_types
import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from batchd.cli import EXIT_CONFIG, run
from batchd.config import SECTIONS, ProviderConfig, RouteConfig, WebhookConfig
from batchd.config_load import env_var, load_settings
from batchd.errors import ConfigError
from batchd.providers.emulator_options import EmulatorOptions

from .helpers import env, write
from .test_example import uncommented

# Where each model's keys sit in a file: the header, the required keys, and the dotted prefix.
TABLES: dict[type[BaseModel], tuple[str, str, str]] = {
    **{model: (f"[{name}]", "", name) for name, model in SECTIONS.items()},
    ProviderConfig: ("[providers.emulator]", 'kind = "emulator"', "providers.emulator"),
    EmulatorOptions: ("[providers.emulator]", 'kind = "emulator"', "providers.emulator"),
    RouteConfig: ("[[routes]]", 'name = "r"\nspool = "/srv/r"\nprovider = "emulator"', "routes[0]"),
    WebhookConfig: ("[[webhooks]]", 'name = "w"\nurl = "https://hooks.example/"', "webhooks[0]"),
}
TOML_BAD = ["inf", "-inf", "nan", "1e400", "99999999999999999999", "-99999999999999999999"]
ENV_BAD = ["inf", "Infinity", "nan", "1e400", "99999999999999999999"]


def _numeric(field: FieldInfo) -> bool:
    args = getattr(field.annotation, "__args__", (field.annotation,))
    return any(a in (int, float) for a in args)


def _numbers_list(field: FieldInfo) -> bool:
    """``list[<a number type>]`` (a webhook's retry_delays_s)."""
    if getattr(field.annotation, "__origin__", None) is not list:
        return False
    (item,) = field.annotation.__args__  # type: ignore[union-attr]
    return getattr(item, "__origin__", item) in (int, float)


LISTS = [(m, k) for m in TABLES for k, f in m.model_fields.items() if _numbers_list(f)]


@pytest.mark.parametrize(("model", "key"), LISTS, ids=[f"{TABLES[m][2]}.{k}" for m, k in LISTS])
def test_every_number_in_a_list_is_finite(tmp_path: Path, model: type[BaseModel], key: str) -> None:
    dotted = f"{TABLES[model][2]}.{key}"
    for value in ["[inf]", "[1, nan]", "[1e400]", "[99999999999999999999]"]:
        text = error_of(tmp_path, file_with(model, key, value))
        assert f"{tmp_path / 'batchd.toml'}: {dotted}" in text, (value, text)


def numeric_keys() -> Iterator[tuple[type[BaseModel], str, FieldInfo]]:
    for model in TABLES:
        for key, field in model.model_fields.items():
            if _numeric(field):
                yield model, key, field


NUMERIC = list(numeric_keys())
IDS = [f"{TABLES[m][2]}.{k}" for m, k, _ in NUMERIC]


def bounds(field: FieldInfo) -> tuple[int | float, bool, int | float]:
    """(low, low included, high) from the field's constraints."""
    low: int | float | None = None
    high: int | float | None = None
    included = True
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            low = item.ge  # type: ignore[assignment]
        elif isinstance(item, annotated_types.Gt):
            low, included = item.gt, False  # type: ignore[assignment]
        elif isinstance(item, annotated_types.Le):
            high = item.le  # type: ignore[assignment]
    assert low is not None and high is not None, "every number needs a lower and an upper bound"
    return low, included, high


def range_text(field: FieldInfo) -> str:
    """How config/batchd.toml states a range: ``1 to 256`` or ``over 0, up to 86_400``."""
    low, included, high = bounds(field)

    def num(x: int | float) -> str:
        return f"{int(x):_}" if x == int(x) else repr(x)

    return f"{num(low)} to {num(high)}" if included else f"over {num(low)}, up to {num(high)}"


def file_with(model: type[BaseModel], key: str, value: str) -> str:
    header, required, _ = TABLES[model]
    return f"{header}\n{required}\n{key} = {value}\n"


def error_of(tmp_path: Path, text: str, **extra: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), environ=env(tmp_path, **extra))
    return str(info.value)


@pytest.mark.parametrize(("model", "key", "field"), NUMERIC, ids=IDS)
def test_every_number_has_a_finite_range(
    tmp_path: Path, model: type[BaseModel], key: str, field: FieldInfo
) -> None:
    low, included, high = bounds(field)
    assert math.isfinite(low) and math.isfinite(high)
    below = str(int(low) - 1) if included else str(int(low))
    dotted = f"{TABLES[model][2]}.{key}"
    for value in [*TOML_BAD, below, str(int(high) + 1)]:
        text = error_of(tmp_path, file_with(model, key, value))
        assert f"{tmp_path / 'batchd.toml'}: {dotted}: " in text, (value, text)


@pytest.mark.parametrize(
    ("model", "key", "field"),
    [n for n in NUMERIC if n[0] in SECTIONS.values()],
    ids=[i for i, n in zip(IDS, NUMERIC, strict=True) if n[0] in SECTIONS.values()],
)
def test_every_number_override_is_finite_and_in_range(
    tmp_path: Path, model: type[BaseModel], key: str, field: FieldInfo
) -> None:
    section = TABLES[model][2]
    var = env_var(section, key)
    for value in ENV_BAD:
        text = error_of(tmp_path, "", **{var: value})
        assert text.startswith(f"{var}: {section}.{key}: "), (value, text)
        assert f"(got {value!r})" in text or "valid integer" in text


def test_the_error_says_what_is_wrong(tmp_path: Path) -> None:
    huge = "1" + "0" * 20
    text = error_of(tmp_path, "[track]\npoll_max_s = inf\n", BATCHD_INTAKE__MAX_LINES=huge)
    assert "track.poll_max_s: Input should be a finite number (got inf)" in text
    assert "intake.max_lines: Input should be less than or equal to 100000000" in text


def test_a_bad_number_exits_3_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHD_TRACK__POLL_MAX_S", "1e400")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert run(["check", "--config", str(write(tmp_path, ""))]) == EXIT_CONFIG
    assert "BATCHD_TRACK__POLL_MAX_S: track.poll_max_s: " in capsys.readouterr().err


# ------------------------------------------------------------------------------ documented


def _first_tables(text: str) -> dict[str, list[str]]:
    """The lines of the first table of each kind in the example (with its comment lines)."""
    tables: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("["):
            header = "[providers.emulator]" if line.startswith("[providers.") else line
            current = None if header in tables else tables.setdefault(header, [])
        elif current is not None:
            current.append(line)
    return tables


@pytest.mark.parametrize(("model", "key", "field"), NUMERIC, ids=IDS)
def test_every_range_is_documented(model: type[BaseModel], key: str, field: FieldInfo) -> None:
    lines = _first_tables(uncommented())[TABLES[model][0]]
    at = next(i for i, line in enumerate(lines) if re.match(rf"^(# )?{key} = ", line))
    comments = []
    for line in reversed(lines[:at]):
        if not line.startswith("# ") or re.match(r"^# [a-z_]+ = ", line):
            break
        comments.append(line)
    text = f"# Range: {range_text(field)}"
    assert any(c in (f"{text}.", f"{text}") or c.startswith(f"{text} (") for c in comments)


# ------------------------------------------------------------------------------ paths


@pytest.mark.parametrize("value", ["", " ", "a\0b"])
def test_an_empty_data_dir_is_refused(tmp_path: Path, value: str) -> None:
    text = error_of(tmp_path, "", BATCHD_DAEMON__DATA_DIR=value)
    assert text.startswith("BATCHD_DAEMON__DATA_DIR: daemon.data_dir: must not ")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[daemon]\ndata_dir = ""\n', "daemon.data_dir"),
        ('[[routes]]\nname = "r"\nspool = ""\nprovider = "emulator"\n', "routes[0].spool"),
        ('[providers.emulator]\nkind = "emulator"\napi_key_file = ""\n', "providers.emulator"),
        ('[[webhooks]]\nname = "w"\nurl = "https://e.example/"\nsecret_file = ""\n', "webhooks"),
    ],
)
def test_an_empty_path_is_refused(tmp_path: Path, text: str, key: str) -> None:
    error = error_of(tmp_path, text)
    assert f": {key}" in error
    assert "must not be empty (an empty path would mean the current folder)" in error


def test_an_empty_data_dir_fails_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("BATCHD_DAEMON__DATA_DIR", "")
    assert run(["check", "--config", str(write(tmp_path, ""))]) == EXIT_CONFIG
    assert "daemon.data_dir: must not be empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batchd.toml"]
