"""``jobs list|show`` and ``cancel`` by a user who cannot read the database:
through the daemon's API socket, limited to that user's routes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.integration.api.conftest import lines, start_api, stop_api
from tests.integration.api.peers import NOBODY, cli_as_user

MEMBER_GID = 4242


def share_spool(spool: Path) -> None:
    """A drop folder shared with a group, as systemd-tmpfiles makes it."""
    for folder in (spool, *(p for p in spool.iterdir() if p.is_dir())):
        os.chown(folder, -1, MEMBER_GID)
        os.chmod(folder, 0o3775 if folder.name == "inbox" else 0o2775)


async def test_a_spool_group_member_lists_shows_and_cancels_over_the_socket(
    tmp_path: Path,
) -> None:
    api = await start_api(tmp_path, speed=1.0)  # slow: the jobs stay open
    try:
        config = api.short / "batchd.toml"  # where the member can read it
        shutil.copy(tmp_path / "batchd.toml", config)
        os.chmod(config, 0o644)
        share_spool(api.short / "spool")
        async with api.unix() as bd:
            root_id = (await bd.submit(lines(2, "r"), name="root.jsonl"))["id"]
            await bd.submit(lines(2, "o"), name="other.jsonl", route="other")
        base = ["--config", str(config)]
        code, out = await cli_as_user(["jobs", "list", "--json", *base], NOBODY, [MEMBER_GID])
        assert code == 0, out
        listed = json.loads(out)["submissions"]
        assert [s["id"] for s in listed] == [root_id]  # route "other" is not theirs
        assert listed[0]["requests"] == 2 and listed[0]["state"] == "active"
        code, out = await cli_as_user(
            ["jobs", "show", root_id, "--json", *base], NOBODY, [MEMBER_GID]
        )
        assert code == 0 and json.loads(out)["jobs"][0]["line_count"] == 2
        code, _ = await cli_as_user(["cancel", root_id, *base], NOBODY, [MEMBER_GID])
        assert code == 1  # not theirs
        source = api.short / "mine.jsonl"
        source.write_bytes(lines(2, "m"))
        os.chmod(source, 0o644)
        code, out = await cli_as_user(
            ["submit", str(source), "--json", *base], NOBODY, [MEMBER_GID]
        )
        assert code == 0, out
        code, out = await cli_as_user(
            ["cancel", "mine.jsonl", "--json", *base], NOBODY, [MEMBER_GID]
        )
        assert code == 0 and json.loads(out)["cancel_requested"] is True, out
    finally:
        await stop_api(api)
