"""Who may use a shared app: the app on a loopback address is the user's own; bound to any other
address it must have a login, either per-user access tokens set in the environment or Streamlit's
OpenID Connect login (``st.login``, configured in ``.streamlit/secrets.toml``). With a login, the
name recorded with each decision is the login's, not a free text box.

``SPECTRUM_APP_TOKENS="ana:<token>,ben:<token>"`` gives each user their own token (compared in
constant time); ``SPECTRUM_AUTH=oidc`` uses the identity provider configured for ``st.login``.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from typing import Literal

from .errors import ConfigError

TOKENS_ENV = "SPECTRUM_APP_TOKENS"
AUTH_ENV = "SPECTRUM_AUTH"
# Shorter tokens can be guessed online; 16 characters of a random token are far beyond that.
MIN_TOKEN_CHARS = 16

AuthMode = Literal["tokens", "oidc"]


def is_loopback(address: str) -> bool:
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def parse_tokens(text: str) -> dict[str, str]:
    """``name:token`` items separated by commas → token → user name; refuses short tokens,
    missing names and a token given twice, naming the item."""
    tokens: dict[str, str] = {}
    for index, item in enumerate(t.strip() for t in text.split(",")):
        if not item:
            continue
        name, sep, token = item.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not name:
            raise ConfigError(f"{TOKENS_ENV}: item {index + 1} is not NAME:TOKEN")
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"{TOKENS_ENV}: {name}'s token is shorter than {MIN_TOKEN_CHARS} characters")
        if token in tokens:
            raise ConfigError(f"{TOKENS_ENV}: {name} and {tokens[token]} share a token")
        tokens[token] = name
    if not tokens:
        raise ConfigError(f"{TOKENS_ENV} is set but names no NAME:TOKEN")
    return tokens


def user_for_token(given: str, tokens: dict[str, str]) -> str | None:
    """The user whose token this is (every token compared, in constant time), or None."""
    found = None
    for token, name in tokens.items():
        if hmac.compare_digest(given.encode(), token.encode()):
            found = name
    return found


def auth_mode(environ: Mapping[str, str]) -> AuthMode | None:
    """How the app asks for a login (None: it does not)."""
    if environ.get(TOKENS_ENV, "").strip():
        parse_tokens(environ[TOKENS_ENV])  # a malformed setting fails here, not at the first login
        return "tokens"
    mode = environ.get(AUTH_ENV, "").strip().lower()
    if mode == "oidc":
        return "oidc"
    if mode:
        raise ConfigError(f"{AUTH_ENV}={mode!r}: use 'oidc' (or set {TOKENS_ENV} instead)")
    return None


def check_address(address: str, environ: Mapping[str, str]) -> AuthMode | None:
    """Refuse to serve a non-loopback address without a login; returns the login mode."""
    mode = auth_mode(environ)
    if mode is None and not is_loopback(address):
        raise ConfigError(
            f"--address {address} would put every dataset, decision and run in the open: set "
            f'{TOKENS_ENV}="name:token,..." (one random token per user, at least {MIN_TOKEN_CHARS} '
            f"characters) or {AUTH_ENV}=oidc with an [auth] section in .streamlit/secrets.toml "
            "(Streamlit's OpenID Connect login); see docs/app.md, 'A shared team server'"
        )
    return mode
