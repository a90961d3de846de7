"""load_settings: sources, precedence, defaults, validation and its messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from batchd import config_load
from batchd.config import (
    ENDPOINTS,
    CollectSettings,
    DaemonSettings,
    IntakeSettings,
    ProviderConfig,
    RetentionSettings,
    RouteConfig,
    Settings,
    StoreSettings,
    SubmitSettings,
    TrackSettings,
)
from batchd.config_load import env_var, env_vars, load_settings
from batchd.errors import ConfigError
from batchd.providers.emulator_options import EmulatorOptions

from .helpers import env, error_text, load, problems, write

# ------------------------------------------------------------------------------ sources


def test_no_file_gives_built_in_defaults(tmp_path: Path) -> None:
    settings = load_settings(environ=env(tmp_path))
    data_dir = tmp_path / "home" / ".local" / "state" / "batchd"
    assert settings.source is None
    assert settings.daemon == DaemonSettings(data_dir=data_dir)
    assert (settings.intake, settings.submit) == (IntakeSettings(), SubmitSettings())
    assert (settings.track, settings.collect) == (TrackSettings(), CollectSettings())
    assert settings.providers == {"emulator": ProviderConfig(kind="emulator")}
    assert settings.routes == [
        RouteConfig(name="default", spool=data_dir / "spool", provider="emulator")
    ]
    assert settings.webhooks == []


def test_the_emulator_needs_no_key(tmp_path: Path) -> None:
    provider = load_settings(environ=env(tmp_path)).provider_settings()
    assert (provider.name, provider.kind, provider.api_key) == ("emulator", "emulator", None)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"STATE_DIRECTORY": "/var/lib/batchd"}, Path("/var/lib/batchd")),
        ({"STATE_DIRECTORY": "/var/lib/batchd:/var/lib/other"}, Path("/var/lib/batchd")),
        ({"XDG_STATE_HOME": "/x/state"}, Path("/x/state/batchd")),
    ],
)
def test_data_dir_default(tmp_path: Path, extra: dict[str, str], expected: Path) -> None:
    assert load_settings(environ=env(tmp_path, **extra)).daemon.data_dir == expected


def test_default_path_is_used_when_it_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[daemon]\nlog_level = "debug"\n')
    monkeypatch.setattr(config_load, "DEFAULT_CONFIG_PATH", path)
    settings = load_settings(environ=env(tmp_path))
    assert (settings.source, settings.daemon.log_level) == (path, "debug")


def test_batchd_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[daemon]\nlog_level = "error"\n', "other.toml")
    settings = load_settings(environ=env(tmp_path, BATCHD_CONFIG=str(path)))
    assert (settings.source, settings.daemon.log_level) == (path, "error")


def test_an_argument_beats_batchd_config(tmp_path: Path) -> None:
    path = write(tmp_path, '[daemon]\nlog_level = "warning"\n')
    other = tmp_path / "missing.toml"
    assert load_settings(path, environ=env(tmp_path, BATCHD_CONFIG=str(other))).source == path


@pytest.mark.parametrize("how", ["argument", "variable"])
def test_an_explicit_missing_file_is_an_error(tmp_path: Path, how: str) -> None:
    missing = tmp_path / "nope.toml"
    path, extra = (missing, {}) if how == "argument" else (None, {"BATCHD_CONFIG": str(missing)})
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=env(tmp_path, **extra))
    assert str(info.value).startswith(f"{missing}: ")


@pytest.mark.parametrize("data", [b"[daemon\n", b"a = 1\na = 2\n", b"\xff\xfe = 1\n"])
def test_unreadable_toml_names_the_file(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=env(tmp_path))
    assert str(info.value).startswith(f"{path}: ")


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=str(tmp_path)):
        load_settings(tmp_path, environ=env(tmp_path))


# ------------------------------------------------------------------------------ environment


def test_environment_beats_the_file(tmp_path: Path) -> None:
    text = "[track]\npoll_max_s = 100\n[intake]\nuse_inotify = true\n"
    settings = load(
        tmp_path,
        text,
        BATCHD_TRACK__POLL_MAX_S="60",
        BATCHD_INTAKE__USE_INOTIFY="false",
        BATCHD_DAEMON__DATA_DIR=str(tmp_path / "state"),
        BATCHD_DAEMON__LOG_LEVEL="DEBUG",
    )
    assert settings.track.poll_max_s == 60.0
    assert settings.intake.use_inotify is False
    assert settings.daemon.data_dir == tmp_path / "state"
    assert settings.daemon.log_level == "debug"
    assert settings.routes[0].spool == tmp_path / "state" / "spool"


def test_every_scalar_key_has_one_variable() -> None:
    variables = env_vars()
    assert variables["BATCHD_TRACK__POLL_MAX_S"] == "track.poll_max_s"
    assert env_var("daemon", "log_level") == "BATCHD_DAEMON__LOG_LEVEL"
    sections: dict[str, type[BaseModel]] = {"daemon": DaemonSettings, "intake": IntakeSettings}
    sections |= {"submit": SubmitSettings, "track": TrackSettings, "collect": CollectSettings}
    sections |= {"retention": RetentionSettings, "store": StoreSettings}
    expected = {f"{s}.{k}" for s, model in sections.items() for k in model.model_fields}
    assert sorted(variables.values()) == sorted(expected)


def test_a_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    assert problems(tmp_path, "", BATCHD_DAEMON__LOG_LEVEL="loud") == [
        ("BATCHD_DAEMON__LOG_LEVEL", "daemon.log_level")
    ]


def test_an_unknown_variable_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    text = error_text(tmp_path, "", BATCHD_TRACK__POLL_MAXS="1")
    assert text.startswith("BATCHD_TRACK__POLL_MAXS: ")
    assert "BATCHD_TRACK__POLL_MAX_S" in text


def test_other_batchd_variables_are_ignored(tmp_path: Path) -> None:
    assert load(tmp_path, "", BATCHD_SOAK="1", BATCHD_CONFIGX="y").source is not None


# ------------------------------------------------------------------------------ validation messages


def test_every_problem_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    text = """
[daemon]
log_levle = "debug"
shutdown_grace_s = -1

[[routes]]
name = "a"
spool = "/srv/a"
provider = "emulator"

[[routes]]
name = "b"
spool = "/srv/b"
provider = "emulator"
timeout_hours = 200
endpoint = "/v1/chat"
"""
    path = str(tmp_path / "batchd.toml")
    assert sorted(problems(tmp_path, text)) == sorted(
        [
            (path, "daemon.log_levle"),
            (path, "daemon.shutdown_grace_s"),
            (path, "routes[1].timeout_hours"),
            (path, "routes[1].endpoint"),
        ]
    )


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("[daemon]\nlog_levle = 'debug'\n", "'log_level'"),
        ("[deamon]\n", "'daemon'"),
        ("[track]\npoll_max = 1\n", "'poll_max_s'"),
        (
            "[[routes]]\nname='a'\nspool='/a'\nprovider='emulator'\ntimeout_hour=1\n",
            "'timeout_hours'",
        ),
        ("[providers.x]\nbase_ur = 'https://a'\n", "'base_url'"),
        ("[providers.x]\napi_key_flie = '/k'\n", "'api_key_file'"),
    ],
)
def test_unknown_keys_suggest_the_closest(tmp_path: Path, text: str, suggestion: str) -> None:
    assert suggestion in error_text(tmp_path, text)


def test_source_cannot_be_set_from_the_file(tmp_path: Path) -> None:
    assert problems(tmp_path, "source = '/etc/x'\n")[0][1] == "source"


def test_section_ranges(tmp_path: Path) -> None:
    assert problems(tmp_path, "[track]\npoll_initial_s = 10\npoll_max_s = 5\n")[0][1] == "track"
    assert problems(tmp_path, "[submit]\nretry_max_s = 1\n")[0][1] == "submit"


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    with pytest.raises(ValueError, match="frozen"):
        settings.daemon.log_level = "debug"  # type: ignore[misc]


# ------------------------------------------------------------------------------ routes


def route(**fields: object) -> str:
    base: dict[str, object] = {"name": "r", "spool": "/srv/r", "provider": "emulator"}
    base |= fields
    body = "\n".join(f"{k} = {_toml(v)}" for k, v in base.items())
    return f"[[routes]]\n{body}\n"


def _toml(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + "}"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_a_route_with_every_key(tmp_path: Path) -> None:
    text = route(
        endpoint="/v1/ocr", model="mistral-ocr-latest", timeout_hours=168, metadata={"team": "x"}
    )
    assert load(tmp_path, text).routes == [
        RouteConfig(
            name="r",
            spool=Path("/srv/r"),
            provider="emulator",
            endpoint="/v1/ocr",
            model="mistral-ocr-latest",
            timeout_hours=168,
            metadata={"team": "x"},
        )
    ]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_mistral_endpoint_is_accepted(tmp_path: Path, endpoint: str) -> None:
    assert load(tmp_path, route(endpoint=endpoint)).routes[0].endpoint == endpoint


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"name": "Bad Name"}, "routes[0].name"),
        ({"endpoint": "/v1/batch/jobs"}, "routes[0].endpoint"),
        ({"timeout_hours": 0}, "routes[0].timeout_hours"),
        ({"timeout_hours": 169}, "routes[0].timeout_hours"),
        ({"metadata": {"batchd_job": "x"}}, "routes[0].metadata"),
        ({"metadata": {"k" * 33: "v"}}, "routes[0].metadata." + "k" * 33),
        ({"metadata": {"k": "v" * 513}}, "routes[0].metadata.k"),
        ({"metadata": {"k": ""}}, "routes[0].metadata.k"),
        ({"model": ""}, "routes[0].model"),
        ({"provider": "emulatr"}, "routes[0].provider"),
    ],
)
def test_route_rules(tmp_path: Path, fields: dict[str, object], key: str) -> None:
    assert [k for _, k in problems(tmp_path, route(**fields))] == [key]


def test_unknown_provider_suggests_the_closest(tmp_path: Path) -> None:
    assert "'emulator'" in error_text(tmp_path, route(provider="emulatr"))


def test_route_names_are_unique(tmp_path: Path) -> None:
    text = route(spool="/srv/a") + route(spool="/srv/b")
    assert [k for _, k in problems(tmp_path, text)] == ["routes[1].name"]


@pytest.mark.parametrize(
    ("a", "b"), [("/srv/a", "/srv/a/"), ("/srv/a", "/srv/a/inner"), ("/srv/a/x", "/srv")]
)
def test_spools_must_not_overlap(tmp_path: Path, a: str, b: str) -> None:
    text = route(name="one", spool=a) + route(name="two", spool=b)
    assert [k for _, k in problems(tmp_path, text)] == ["routes[1].spool"]


def test_sibling_spools_are_fine(tmp_path: Path) -> None:
    text = route(name="one", spool="/srv/a") + route(name="two", spool="/srv/ab")
    assert len(load(tmp_path, text).routes) == 2


def test_a_relative_spool_is_under_data_dir(tmp_path: Path) -> None:
    text = f"[daemon]\ndata_dir = '{tmp_path}/state'\n" + route(spool="spools/r")
    assert load(tmp_path, text).routes[0].spool == tmp_path / "state" / "spools" / "r"


def test_route_lookup(tmp_path: Path) -> None:
    settings = load(tmp_path, route(name="one", spool="/a") + route(name="two", spool="/b"))
    assert settings.route("two").spool == Path("/b")
    with pytest.raises(ConfigError, match="nope"):
        settings.route("nope")


def test_routes_replace_the_default_route(tmp_path: Path) -> None:
    assert [r.name for r in load(tmp_path, route(name="only")).routes] == ["only"]


# ------------------------------------------------------------------------------ providers


def test_provider_settings_map_every_key(tmp_path: Path) -> None:
    text = """
[providers.mistral]
base_url = "https://api.eu.mistral.ai/"
api_key_env = "MY_KEY"
requests_per_second = 2.5
timeout_s = 30
connect_timeout_s = 3
download_timeout_s = 600
read_retries = 2
retry_base_s = 1
retry_max_s = 8
retry_after_max_s = 90
max_requests_per_job = 5000
max_bytes_per_job = 1000000
""" + route(provider="mistral")
    settings = load(tmp_path, text, MY_KEY="k-123456789")
    ps = settings.provider_settings()
    assert ps.name == "mistral" and ps.kind == "mistral"
    assert ps.base_url == "https://api.eu.mistral.ai"
    assert ps.api_key is not None and ps.api_key.reveal() == "k-123456789"
    assert (ps.requests_per_second, ps.timeout_s, ps.connect_timeout_s) == (2.5, 30, 3)
    assert (ps.download_timeout_s, ps.read_retries) == (600, 2)
    assert (ps.retry_base_s, ps.retry_max_s, ps.retry_after_max_s) == (1, 8, 90)
    assert (ps.limits.max_requests_per_job, ps.limits.max_bytes_per_job) == (5000, 1000000)


def test_emulator_keys(tmp_path: Path) -> None:
    text = "[providers.emu]\nkind = 'emulator'\nemulator_speed = 1000\nemulator_seed = 7\n"
    ps = load(tmp_path, text + route(provider="emu")).provider_settings("emu")
    assert (ps.kind, ps.options, ps.api_key) == (
        "emulator",
        EmulatorOptions(emulator_speed=1000, emulator_seed=7),
        None,
    )


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ("base_url = 'http://api.example.com'", "providers.m.base_url"),
        ("base_url = 'ftp://api.example.com'", "providers.m.base_url"),
        ("base_url = 'https://user:pw@api.example.com'", "providers.m.base_url"),
        ("kind = 'nosuch'", "providers.m.kind"),
        ("emulator_speed = 5", "providers.m.emulator_speed"),
        ("max_bytes_per_job = 999999999999", "providers.m.max_bytes_per_job"),
        ("max_requests_per_job = 0", "providers.m.max_requests_per_job"),
        ("api_key_credential = '../etc/passwd'", "providers.m.api_key_credential"),
        ("api_key_env = 'NOT A NAME'", "providers.m.api_key_env"),
    ],
)
def test_provider_rules(tmp_path: Path, fields: str, key: str) -> None:
    assert [k for _, k in problems(tmp_path, f"[providers.m]\n{fields}\n")] == [key]


def test_provider_names_are_checked(tmp_path: Path) -> None:
    assert [k for _, k in problems(tmp_path, "[providers.Bad_Name]\n")] == ["providers.Bad_Name"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:9/", "http://[::1]:80"])
def test_plain_http_only_to_loopback(tmp_path: Path, url: str) -> None:
    text = f"[providers.m]\nkind = 'emulator'\nbase_url = '{url}'\n"
    assert load(tmp_path, text).providers["m"].base_url == url.rstrip("/")


def test_an_unknown_provider_name_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope"):
        load(tmp_path, "").provider_settings("nope")


def test_settings_built_in_code_get_the_same_defaults(tmp_path: Path) -> None:
    settings = Settings(daemon=DaemonSettings(data_dir=tmp_path))
    assert [r.spool for r in settings.routes] == [tmp_path / "spool"]
    assert "emulator" in settings.providers


def test_finished_rows_must_outlive_their_done_folders(tmp_path: Path) -> None:
    text = error_text(tmp_path, "[retention]\ndone_days = 30\nrows_days = 7\n")
    assert "rows_days must be 0 (keep) or >= done_days" in text
    assert load(tmp_path, "[retention]\ndone_days = 30\nrows_days = 0\n").retention.rows_days == 0
