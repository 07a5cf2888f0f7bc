"""Registry authentication: htpasswd basic auth, and the bearer-token flow with a token endpoint.

- `htpasswd`: every request carries `Authorization: Basic` checked against an htpasswd file
  (bcrypt entries, as `htpasswd -B` writes them). Anonymous requests get 401 with
  `WWW-Authenticate: Basic realm=...`.
- `token`: requests carry `Authorization: Bearer <token>`; without a valid token covering the
  repository and action they get 401 with `WWW-Authenticate: Bearer realm=<token endpoint>,
  service=<service>,scope=repository:<name>:<actions>`. The registry serves that endpoint itself
  (`GET /token?service=&scope=...`, user known from Basic credentials checked against the
  htpasswd file): it issues a JWT (HS256, signed with the server's key) whose `access` claim
  lists what the user may do: users of the htpasswd file pull and push everywhere; anonymous
  users may pull when `anonymous_pull` is set, nothing otherwise.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from typing import Any

import bcrypt
import jwt

TOKEN_LIFETIME = 300
ALGORITHM = "HS256"


class AuthError(Exception):
    def __init__(self, message: str, challenge: str) -> None:
        super().__init__(message)
        self.challenge = challenge


def load_htpasswd(path: str) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith(b"#"):
                continue
            user, sep, hashed = line.partition(b":")
            if not sep or not hashed.startswith((b"$2y$", b"$2b$", b"$2a$")):
                raise ValueError(f"{path}:{number}: only bcrypt entries are supported (htpasswd -B)")
            users[user.decode()] = hashed.replace(b"$2y$", b"$2b$", 1)
    return users


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, sep, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


@dataclass
class Access:
    type: str       # repository or registry
    name: str       # the repository name, or "catalog"
    actions: tuple[str, ...]

    def scope(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def parse_scope(text: str) -> Access | None:
    parts = text.split(":")
    if len(parts) < 3:
        return None
    kind, actions = parts[0], parts[-1]
    name = ":".join(parts[1:-1])
    return Access(kind, name, tuple(a for a in actions.split(",") if a))


class Authenticator:
    """Decides whether a request may do what it asks (None: no authentication configured)."""

    def __init__(self, mode: str, htpasswd: str, realm: str = "dockyard-registry", service: str = "dockyard-registry",
                 token_realm: str | None = None, key: bytes | None = None, anonymous_pull: bool = False) -> None:
        if mode not in ("htpasswd", "token"):
            raise ValueError(f"unknown auth mode {mode!r} (htpasswd or token)")
        self.mode, self.realm, self.service = mode, realm, service
        self.htpasswd = htpasswd
        self.users = load_htpasswd(htpasswd)
        self.token_realm = token_realm
        self.key = key or secrets.token_bytes(32)
        self.anonymous_pull = anonymous_pull

    def check_password(self, user: str, password: str) -> bool:
        hashed = self.users.get(user)
        return hashed is not None and bcrypt.checkpw(password.encode(), hashed)

    def authorize(self, headers: Any, needed: Access, host: str) -> str:
        """The user name (or "" for anonymous access that was allowed); AuthError otherwise."""
        header = headers.get("Authorization")
        if self.mode == "htpasswd":
            creds = basic_credentials(header)
            if creds is not None and self.check_password(*creds):
                return creds[0]
            raise AuthError("authentication required", f'Basic realm="{self.realm}"')
        if header and header.lower().startswith("bearer "):
            try:
                claims = jwt.decode(header[7:].strip(), self.key, algorithms=[ALGORITHM], audience=self.service,
                                    issuer=self.service)
            except jwt.PyJWTError as e:
                raise AuthError(f"invalid token: {e}", self._challenge(needed, host, "invalid_token")) from None
            if not needed.actions:  # the base endpoint: any valid token will do
                return str(claims.get("sub", ""))
            for grant in claims.get("access") or []:
                if grant.get("type") == needed.type and grant.get("name") == needed.name and \
                        set(needed.actions) <= set(grant.get("actions") or []):
                    return str(claims.get("sub", ""))
            raise AuthError("the token does not grant " + needed.scope(),
                            self._challenge(needed, host, "insufficient_scope"))
        raise AuthError("authentication required", self._challenge(needed, host))

    def _challenge(self, needed: Access, host: str, error: str | None = None) -> str:
        realm = self.token_realm or f"http://{host}/token"
        out = f'Bearer realm="{realm}",service="{self.service}"'
        if needed.actions:
            out += f',scope="{needed.scope()}"'
        return out + (f',error="{error}"' if error else "")

    def issue(self, authorization: str | None, service: str, scopes: list[str]) -> dict[str, Any]:
        """The token endpoint: a signed token for what the caller may do of what it asked."""
        if self.mode != "token":
            raise AuthError("this registry does not issue tokens", f'Basic realm="{self.realm}"')
        user = ""
        creds = basic_credentials(authorization)
        if authorization is not None:
            if creds is None or not self.check_password(*creds):
                raise AuthError("invalid username or password", f'Basic realm="{self.realm}"')
            user = creds[0]
        granted = []
        for text in scopes:
            wanted = parse_scope(text)
            if wanted is None or wanted.type not in ("repository", "registry"):
                continue
            if user:
                allowed = {"pull", "push", "delete", "*"} if wanted.type == "repository" else {"*"}
            else:
                allowed = {"pull"} if self.anonymous_pull and wanted.type == "repository" else set()
            actions = [a for a in wanted.actions if a in allowed]
            if actions:
                granted.append({"type": wanted.type, "name": wanted.name, "actions": actions})
        now = int(time.time())
        claims = {"iss": self.service, "sub": user, "aud": service or self.service, "iat": now, "nbf": now - 5,
                  "exp": now + TOKEN_LIFETIME, "jti": secrets.token_hex(8), "access": granted}
        token = jwt.encode(claims, self.key, algorithm=ALGORITHM)
        return {"token": token, "access_token": token, "expires_in": TOKEN_LIFETIME,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
