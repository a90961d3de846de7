"""The shipped unit, drop-in, sysusers.d and tmpfiles.d files.

Content checks always run. ``systemd-analyze verify`` and ``security --offline=true`` run where
``systemd-analyze`` is on PATH (no running systemd needed) and are skipped elsewhere; the
sysusers/tmpfiles dry runs need the tools and root (tmpfiles sets owners)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.integration.systemd.unit_file import (
    DROP_IN,
    SHIPPED_BINARY,
    SYSUSERS,
    TMPFILES,
    UNIT,
    WEBHOOKS_DROP_IN,
    analyze,
    complaints_about,
    directives,
    exposure,
    seconds,
    unit_for_verify,
    verify,
)

DRAIN_S = 10.0  # the daemon's shutdown grace (reliability S5)
MAX_EXPOSURE = 1.5
# What is left at 1.1: the floor for a network client (reliability.md 3.4).
EXPOSURE_FLOOR = {
    "PrivateNetwork",  # it must reach the provider
    "RestrictAddressFamilies_AF_INET_INET6",
    "RestrictAddressFamilies_AF_UNIX",  # NOTIFY_SOCKET
    "IPAddressDeny",  # an allow-list of provider addresses cannot be shipped
    "RootDirectoryOrRootImage",
    "DeviceAllow",  # char-rtc:r, a side effect of ProtectClock=yes (systemd#32513)
}

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not on PATH (install systemd to check the unit files)",
)


@pytest.fixture(scope="module")
def unit() -> dict[str, list[str]]:
    return directives(UNIT)


def only(unit: dict[str, list[str]], key: str) -> str:
    values = unit.get(key, [])
    assert len(values) == 1, f"{key}= set {len(values)} times: {values}"
    return values[0]


# ---------------------------------------------------------------- content (issue 7)
def test_notify_watchdog_and_restart_policy(unit: dict[str, list[str]]) -> None:
    assert only(unit, "Type") == "notify"
    assert only(unit, "NotifyAccess") == "main"
    assert seconds(only(unit, "WatchdogSec")) == 30
    assert only(unit, "Restart") == "on-failure"
    assert only(unit, "RestartPreventExitStatus") == "3"  # config/start-up failure: no loop
    assert seconds(only(unit, "TimeoutStopSec")) > DRAIN_S
    assert seconds(only(unit, "TimeoutStartSec")) >= 30


def test_exec_lines(unit: dict[str, list[str]]) -> None:
    assert only(unit, "ExecStart") == f"{SHIPPED_BINARY} run --config /etc/batchd/batchd.toml"
    assert only(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"


def test_user_directories_and_umask(unit: dict[str, list[str]]) -> None:
    assert (only(unit, "User"), only(unit, "Group")) == ("batchd", "batchd")
    assert "DynamicUser" not in unit  # the shared inbox needs a static group
    for key in ("StateDirectory", "RuntimeDirectory", "LogsDirectory"):
        assert only(unit, key) == "batchd"
        # /run/batchd holds the API socket local users reach (authorised per request)
        assert only(unit, f"{key}Mode") == ("0755" if key == "RuntimeDirectory" else "0700")
    assert only(unit, "UMask") == "0077"
    assert "/srv/batchd" in " ".join(unit["ReadWritePaths"]).split()
    assert only(unit, "ProtectSystem") == "strict"


def test_credentials(unit: dict[str, list[str]]) -> None:
    """No webhook secret unless webhooks are configured: a missing credential file would fail
    the start of an installation that has none."""
    assert unit["LoadCredential"] == [
        "mistral_api_key:/etc/batchd/credentials/mistral_api_key",
    ]
    assert not any("KEY" in v or "SECRET" in v for v in unit.get("Environment", []))


def test_the_webhooks_drop_in_adds_only_the_signing_secret() -> None:
    text = WEBHOOKS_DROP_IN.read_text()
    assert [line for line in text.splitlines() if line.startswith("[")] == ["[Service]"]
    assert directives(WEBHOOKS_DROP_IN) == {
        "LoadCredential": ["webhook_secret:/etc/batchd/credentials/webhook_secret"]
    }


def test_ip_deny_keeps_metadata_out_but_not_localhost(unit: dict[str, list[str]]) -> None:
    denied = " ".join(unit["IPAddressDeny"]).split()
    assert "169.254.0.0/16" in denied
    assert not {"localhost", "any", "127.0.0.0/8", "::1/128"} & set(denied)  # DNS stubs


def test_drop_in_only_adds_to_the_service_section() -> None:
    text = DROP_IN.read_text()
    sections = [line for line in text.splitlines() if line.startswith("[")]
    assert sections == ["[Service]"]
    assert set(directives(DROP_IN)) <= {"ReadWritePaths", "IPAddressDeny"}


# ---------------------------------------------------------------- systemd-analyze
@needs_analyze
@pytest.mark.systemd
def test_verify_is_clean(tmp_path: Path) -> None:
    result = verify(unit_for_verify(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert complaints_about(output, (str(tmp_path), "batchd.service")) == []


@needs_analyze
@pytest.mark.systemd
def test_verify_is_clean_with_the_example_drop_in(tmp_path: Path) -> None:
    result = verify(unit_for_verify(tmp_path, with_drop_in=True))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert complaints_about(output, (str(tmp_path), "batchd.service")) == []


@needs_analyze
@pytest.mark.systemd
def test_verify_is_clean_with_the_webhooks_drop_in(tmp_path: Path) -> None:
    result = verify(unit_for_verify(tmp_path, drop_in=WEBHOOKS_DROP_IN))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert complaints_about(output, (str(tmp_path), "batchd.service")) == []


@needs_analyze
@pytest.mark.systemd
def test_verify_would_notice_a_mistake(tmp_path: Path) -> None:
    """The clean result above means something: a misspelt key in the drop-in is reported
    (verify still exits 0 for it, which is why the tests read the output)."""
    unit = unit_for_verify(tmp_path, with_drop_in=True)
    drop_in = unit.parent / "batchd.service.d" / DROP_IN.name
    drop_in.write_text(drop_in.read_text() + "\nReadWritePath=/srv/typo\n")
    result = verify(unit)
    assert complaints_about(result.stdout + result.stderr, (str(tmp_path),)) != []


@needs_analyze
@pytest.mark.systemd
def test_verify_refuses_the_unit_without_its_binary(tmp_path: Path) -> None:
    """Why the test rewrites ExecStart=: verify checks the binary exists."""
    shutil.copy(UNIT, tmp_path / "batchd.service")
    if Path(SHIPPED_BINARY).exists():
        pytest.skip(f"{SHIPPED_BINARY} is installed on this machine")
    result = verify(tmp_path / "batchd.service")
    assert result.returncode != 0
    assert SHIPPED_BINARY in result.stdout + result.stderr


@needs_analyze
@pytest.mark.systemd
def test_security_exposure_is_at_most_1_5() -> None:
    """The shipped file as is: ``security --offline`` does not check the binary."""
    result = analyze("security", "--offline=true", "--threshold=15", str(UNIT), cwd=UNIT.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert exposure(result.stdout) <= MAX_EXPOSURE


@needs_analyze
@pytest.mark.systemd
def test_security_gaps_are_only_the_network_client_floor() -> None:
    result = analyze("security", "--offline=true", "--json=short", str(UNIT), cwd=UNIT.parent)
    assert result.returncode == 0, result.stderr
    gaps = {e["json_field"] for e in json.loads(result.stdout) if e["set"] is False}
    assert gaps <= EXPOSURE_FLOOR


@needs_analyze
@pytest.mark.systemd
def test_security_with_the_example_drop_in(tmp_path: Path) -> None:
    unit = unit_for_verify(tmp_path, with_drop_in=True)
    result = analyze("security", "--offline=true", "--threshold=15", unit.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert exposure(result.stdout) <= MAX_EXPOSURE


# ---------------------------------------------------------------- sysusers.d and tmpfiles.d
needs_root_tools = pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None
    or shutil.which("systemd-tmpfiles") is None
    or os.geteuid() != 0,
    reason="needs systemd-sysusers and systemd-tmpfiles, run as root (tmpfiles sets owners)",
)


def _passwd_entry(root: Path, name: str) -> list[str]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    raise AssertionError(f"{name} not in {root}/etc/passwd")


def _mode_owner(path: Path) -> tuple[str, int, int]:
    st = path.lstat()
    assert stat.S_ISDIR(st.st_mode), path
    return (oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid)


@needs_root_tools
@pytest.mark.systemd
def test_sysusers_and_tmpfiles_build_the_spool(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for argv in (
        ["systemd-sysusers", f"--root={root}", str(SYSUSERS)],
        ["systemd-tmpfiles", "--create", f"--root={root}", str(TMPFILES)],
    ):
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    user = _passwd_entry(root, "batchd")
    uid, gid = int(user[2]), int(user[3])
    assert uid < 1000 and user[5:] == ["/var/lib/batchd", "/usr/sbin/nologin"]
    assert f"batchd:x:{gid}:" in (root / "etc" / "group").read_text()
    srv = root / "srv" / "batchd"
    assert {p: _mode_owner(srv / p) for p in (".", "inbox", "processing", "done", "rejected")} == {
        ".": ("0o2750", uid, gid),
        "inbox": ("0o3770", uid, gid),  # setgid + sticky, group-writable
        "processing": ("0o700", uid, gid),
        "done": ("0o2750", uid, gid),
        "rejected": ("0o2750", uid, gid),
    }
    assert _mode_owner(root / "etc" / "batchd") == ("0o755", 0, 0)
    assert _mode_owner(root / "etc" / "batchd" / "credentials") == ("0o700", 0, 0)


# ---------------------------------------------------------------- the example configuration
CONFIG_EXAMPLE = UNIT.parents[1] / "config" / "batchd.toml"


def _values_of(tree: object, key: str) -> list[object]:
    """Every value stored under ``key`` anywhere in a parsed TOML document."""
    if isinstance(tree, dict):
        found = [v for k, v in tree.items() if k == key]
        return found + [x for v in tree.values() for x in _values_of(v, key)]
    if isinstance(tree, list):
        return [x for v in tree for x in _values_of(v, key)]
    return []


@pytest.mark.skipif(not CONFIG_EXAMPLE.is_file(), reason=f"{CONFIG_EXAMPLE} not written yet")
def test_example_config_lines_up_with_the_unit(unit: dict[str, list[str]]) -> None:
    """README step 4 writes the example (``batchd config example``, which prints
    config/batchd.toml) to /etc/batchd/batchd.toml: its data folder is
    the unit's StateDirectory and every spool it names is writable under ProtectSystem=strict."""
    config = tomllib.loads(CONFIG_EXAMPLE.read_text())
    assert {str(v) for v in _values_of(config, "data_dir")} <= {"/var/lib/batchd"}
    writable = [Path(p.lstrip("-")) for p in " ".join(unit["ReadWritePaths"]).split()]
    for spool in _values_of(config, "spool"):
        assert any(Path(str(spool)).is_relative_to(w) for w in writable), spool
