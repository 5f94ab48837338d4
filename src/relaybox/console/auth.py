"""Who may use the console, and as what: credentials, roles, login sessions, CSRF.

* **Where it listens.** 127.0.0.1 by default. On any non-loopback address ``relaybox serve``
  refuses to start unless credentials are configured (:func:`check_bind`).
* **Credentials** come from the environment (``RELAYBOX_CONSOLE_ADMIN_TOKEN``,
  ``RELAYBOX_CONSOLE_VIEWER_TOKEN``, ``RELAYBOX_CONSOLE_ADMIN_PASSWORD``,
  ``RELAYBOX_CONSOLE_VIEWER_PASSWORD``, with ``..._USER`` names) or ``[console]`` in
  relaybox.toml. Tokens are for scripts (``Authorization: Bearer``), user/password for people
  (the login page, or HTTP Basic). With no credentials at all (loopback only) everyone on the
  machine is an admin called ``local``.
* **Roles.** A viewer reads everything but payloads and tracebacks; an admin also acts.
* **Sessions** are a signed cookie (HMAC-SHA256 with ``secret``, or a random key per process).
* **Cross-site requests.** A browser attaches cookies to a forged cross-site POST, so every
  POST that is not authenticated by a header a browser never adds by itself (Bearer, Basic)
  must carry the page's CSRF token (a random cookie, repeated in the form or the
  ``X-CSRF-Token`` header), and a foreign ``Origin`` is refused outright. JSON API calls
  without a token are accepted only with ``Content-Type: application/json``, which a foreign
  page cannot send without a CORS preflight that this server never grants.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from relaybox.config import ConsoleConfig
from relaybox.errors import ConfigError

SESSION_COOKIE = "rb_session"
CSRF_COOKIE = "rb_csrf"
SESSION_SECONDS = 12 * 3600.0


class Role(StrEnum):
    VIEWER = "viewer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a request: the name recorded with their actions, and their role."""

    user: str
    role: Role
    via: str  # "open" (loopback, no credentials), "session", "token", "basic"

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def who(self) -> str:
        """How the user is named in the operator action log."""
        return f"console:{self.user}"


@dataclass(frozen=True, slots=True)
class Credential:
    role: Role
    user: str
    password: str = ""
    token: str = ""


@dataclass(frozen=True)
class AuthSettings:
    credentials: tuple[Credential, ...]
    secret: bytes

    @property
    def open(self) -> bool:
        """No credentials: loopback only, everyone is an admin."""
        return not self.credentials

    @classmethod
    def from_config(
        cls, config: ConsoleConfig, environ: Mapping[str, str] | None = None
    ) -> AuthSettings:
        env = os.environ if environ is None else environ

        def pick(name: str, configured: str) -> str:
            return env.get(f"RELAYBOX_CONSOLE_{name.upper()}") or configured

        found: list[Credential] = []
        for role, user, password, token in (
            (
                Role.ADMIN,
                pick("admin_user", config.admin_user),
                pick("admin_password", config.admin_password),
                pick("admin_token", config.admin_token),
            ),
            (
                Role.VIEWER,
                pick("viewer_user", config.viewer_user),
                pick("viewer_password", config.viewer_password),
                pick("viewer_token", config.viewer_token),
            ),
        ):
            for secret_value, what in ((password, "password"), (token, "token")):
                if secret_value and len(secret_value) < 8:
                    raise ConfigError(f"the console's {role} {what} is shorter than 8 characters")
            if password or token:
                found.append(Credential(role, user or str(role), password, token))
        secret = pick("secret", config.secret)
        key = secret.encode("utf-8") if secret else secrets.token_bytes(32)
        return cls(tuple(found), key)

    # -- checking who is asking ------------------------------------------------------------

    def by_token(self, token: str) -> Identity | None:
        for c in self.credentials:
            if c.token and hmac.compare_digest(c.token.encode(), token.encode()):
                return Identity(f"{c.role}-token", c.role, "token")
        return None

    def by_password(self, user: str, password: str) -> Identity | None:
        for c in self.credentials:
            if (
                c.password
                and hmac.compare_digest(c.user.encode(), user.encode())
                and hmac.compare_digest(c.password.encode(), password.encode())
            ):
                return Identity(c.user, c.role, "basic")
        return None

    def by_authorization(self, header: str) -> Identity | None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return self.by_token(value.strip())
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return None
            user, _, password = decoded.partition(":")
            return self.by_password(user, password)
        return None

    # -- sessions --------------------------------------------------------------------------

    def session_cookie(self, identity: Identity, now: float | None = None) -> str:
        body = json.dumps(
            {
                "u": identity.user,
                "r": str(identity.role),
                "e": (now or time.time()) + SESSION_SECONDS,
            },
            separators=(",", ":"),
        ).encode()
        data = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return f"{data}.{self._sign(data)}"

    def by_session(self, cookie: str, now: float | None = None) -> Identity | None:
        data, _, signature = cookie.partition(".")
        if not data or not hmac.compare_digest(self._sign(data), signature):
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
            user, role, expires = str(body["u"]), Role(body["r"]), float(body["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires < (now or time.time()):
            return None
        # A session outlives nothing: the user must still be configured with that role.
        if not any(c.user == user and c.role is role and c.password for c in self.credentials):
            return None
        return Identity(user, role, "session")

    def _sign(self, data: str) -> str:
        return hmac.new(self.secret, data.encode(), hashlib.sha256).hexdigest()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_matches(cookie: str | None, given: str | None) -> bool:
    return bool(cookie) and bool(given) and hmac.compare_digest(str(cookie), str(given))


def same_origin(origin: str | None, host: str | None) -> bool:
    """True when a request's ``Origin`` (if any) is this server itself."""
    if origin is None:
        return True
    if origin == "null" or host is None:
        return False
    return urlsplit(origin).netloc.lower() == host.lower()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: AuthSettings) -> None:
    """Refuse to listen beyond this machine without credentials."""
    if settings.open and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve the console on {host} without credentials: set"
            " RELAYBOX_CONSOLE_ADMIN_TOKEN or RELAYBOX_CONSOLE_ADMIN_PASSWORD (or [console] in"
            " relaybox.toml), or listen on 127.0.0.1"
        )
