"""The API's pure parts: the tokens file, bearer headers, principals, listen addresses."""

from __future__ import annotations

import pytest

from batchd.api.auth import (
    Peer,
    Principal,
    Role,
    bearer,
    check_token,
    new_token,
    parse_tokens,
    peer_principal,
    token_digest,
)
from batchd.config_api import ApiSettings, listen_problem
from batchd.errors import ConfigError


def test_a_token_is_found_by_its_hash_only() -> None:
    token = new_token()
    entries = parse_tokens(f"# comment\n\nci submit {token_digest(token)}\n", "tokens")
    assert check_token(entries, token) == Principal("token:ci", Role.SUBMIT)
    assert check_token(entries, token + "x") is None
    assert check_token(entries, token_digest(token)) is None  # the hash is not a password


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("ci submit", "expected '<name> <role> <sha256 hex>'"),
        ("ci owner " + "a" * 64, "role must be read, submit or admin"),
        ("ci read bdt_raw-token-pasted", "not the token itself"),
    ],
)
def test_a_bad_tokens_line_is_named_without_its_content(line: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_tokens(f"ok read {'b' * 64}\n{line}\n", "/etc/batchd/tokens")
    assert str(refused.value).startswith("/etc/batchd/tokens line 2: ")
    assert problem in str(refused.value)
    assert "bdt_raw-token-pasted" not in str(refused.value)


def test_bearer_header() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer abc") == "abc"
    assert bearer("Basic abc") is None
    assert bearer(None) is None


def test_root_and_the_service_user_see_everything_others_their_groups() -> None:
    groups = {"chat": 4242, "other": 4343}
    assert peer_principal(Peer(1, 0, 0), groups, service_uid=999).routes is None
    assert peer_principal(Peer(1, 999, 999), groups, service_uid=999).role is Role.ADMIN
    stranger = peer_principal(Peer(1, 65534, 4242), groups, service_uid=999)
    assert stranger.routes == frozenset({"chat"})
    assert stranger.may_cancel("chat", "uid:65534")
    assert not stranger.may_cancel("chat", "uid:1000")
    assert not stranger.may_cancel("other", "uid:65534")


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("unix:/run/batchd/api.sock", None),
        ("127.0.0.1:8090", None),
        ("[::1]:8090", None),
        ("unix:relative.sock", "must be absolute"),
        ("8090", "expected unix:/path or host:port"),
        ("127.0.0.1:0", "expected unix:/path or host:port"),
        ("unix:/" + "x" * 120, "at most 107 bytes"),
    ],
)
def test_listen_addresses(address: str, problem: str | None) -> None:
    found = listen_problem(address)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_an_address_off_this_machine_needs_allow_remote() -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        ApiSettings(listen=["0.0.0.0:8090"])
    assert ApiSettings(listen=["0.0.0.0:8090"], allow_remote=True).listen == ["0.0.0.0:8090"]
