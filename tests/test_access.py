"""Who may use a shared app: loopback needs nothing, any other address a login; tokens per user."""

from __future__ import annotations

import pytest

from spectrum_core.access import (
    AUTH_ENV,
    TOKENS_ENV,
    auth_mode,
    check_address,
    is_loopback,
    parse_tokens,
    user_for_token,
)
from spectrum_core.cli import main
from spectrum_core.errors import ConfigError

ANA = "ana-4f9c2e7b1d8a6035"
BEN = "ben-0a1b2c3d4e5f6789"


def test_loopback_addresses():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("myhost")


def test_tokens_name_their_user_and_bad_settings_are_refused():
    tokens = parse_tokens(f"ana:{ANA}, ben:{BEN}")
    assert user_for_token(ANA, tokens) == "ana" and user_for_token(BEN, tokens) == "ben"
    assert user_for_token(ANA[:-1], tokens) is None and user_for_token("", tokens) is None
    with pytest.raises(ConfigError, match="shorter than 16"):
        parse_tokens("ana:short")
    with pytest.raises(ConfigError, match="item 2 is not NAME:TOKEN"):
        parse_tokens(f"ana:{ANA},{BEN}")
    with pytest.raises(ConfigError, match="share a token"):
        parse_tokens(f"ana:{ANA},ben:{ANA}")


def test_a_non_loopback_address_needs_a_login():
    assert check_address("127.0.0.1", {}) is None
    with pytest.raises(ConfigError, match="in the open"):
        check_address("0.0.0.0", {})
    assert check_address("0.0.0.0", {TOKENS_ENV: f"ana:{ANA}"}) == "tokens"
    assert check_address("0.0.0.0", {AUTH_ENV: "oidc"}) == "oidc"
    with pytest.raises(ConfigError, match="use 'oidc'"):
        auth_mode({AUTH_ENV: "basic"})


def test_spectrum_app_refuses_to_serve_the_network_without_a_login(monkeypatch, capsys):
    monkeypatch.delenv(TOKENS_ENV, raising=False)
    monkeypatch.delenv(AUTH_ENV, raising=False)
    assert main(["app", "--address", "0.0.0.0"]) == 2  # refused before any server starts
    assert "in the open" in capsys.readouterr().err
