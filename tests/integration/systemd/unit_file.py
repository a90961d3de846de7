"""Reading the shipped systemd files, and running ``systemd-analyze`` on them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SYSTEMD_DIR = REPO / "systemd"
UNIT = SYSTEMD_DIR / "batchd.service"
DROP_IN = SYSTEMD_DIR / "batchd.service.d" / "example-override.conf"
WEBHOOKS_DROP_IN = SYSTEMD_DIR / "batchd.service.d" / "webhooks.conf"
SYSUSERS = SYSTEMD_DIR / "batchd.sysusers"
TMPFILES = SYSTEMD_DIR / "batchd.tmpfiles"
SHIPPED_BINARY = "/opt/batchd/venv/bin/batchd"

OVERALL_RE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")


def directives(path: Path) -> dict[str, list[str]]:
    """``Key`` -> every value assigned to it, in order (unit files repeat keys freely).
    Comments and section headers are skipped; the unit has no continuation lines."""
    found: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def seconds(value: str) -> float:
    """A systemd time span of the forms this unit uses: ``30s``, ``10min``, ``90``."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min|m|h)?", value)
    if match is None:
        raise ValueError(f"unsupported time span {value!r}")
    scale = {None: 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}[match.group(2)]
    return float(match.group(1)) * scale


def existing_batchd() -> str:
    """An executable to stand in for the shipped ``ExecStart=`` binary: this venv's ``batchd``
    when installed, else the Python interpreter (``verify`` only checks that it is executable)."""
    candidate = Path(sys.executable).parent / "batchd"
    return str(candidate) if candidate.is_file() else sys.executable


def unit_for_verify(
    directory: Path, *, with_drop_in: bool = False, drop_in: Path | None = None
) -> Path:
    """Copy the shipped unit into ``directory``, rewriting only the ``ExecStart=`` binary (which
    does not exist on a test machine, and ``verify`` checks that it does). Everything else is
    byte for byte what we ship; with ``with_drop_in`` the example drop-in goes next to it, where
    systemd reads it exactly as it would from ``/etc/systemd/system/batchd.service.d/``."""
    text = UNIT.read_text()
    assert text.count(SHIPPED_BINARY) == 1, "the shipped binary path appears once, in ExecStart="
    target = directory / "batchd.service"
    target.write_text(text.replace(SHIPPED_BINARY, existing_batchd()))
    extra = drop_in or (DROP_IN if with_drop_in else None)
    if extra is not None:
        (directory / "batchd.service.d").mkdir()
        shutil.copy(extra, directory / "batchd.service.d" / extra.name)
    return target


def analyze(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return analyze("verify", "--man=no", "--generators=no", unit.name, cwd=unit.parent)


def complaints_about(output: str, names: tuple[str, ...]) -> list[str]:
    """Lines of ``verify`` output about our files. ``verify`` also loads host units our unit
    depends on (``multi-user.target``...), and a host may have warnings of its own about those."""
    return [line for line in output.splitlines() if any(name in line for name in names)]


def exposure(output: str) -> float:
    match = OVERALL_RE.search(output)
    if match is None:
        raise AssertionError(f"no overall exposure in:\n{output}")
    return float(match.group(1))
