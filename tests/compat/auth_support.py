"""Shared pieces of the suites that run Plinth with authentication on: the module server with a
bootstrap admin, users and tokens made by that admin, and a small client of Plinth's native API.

Import the fixtures into a test module to use them there (`from auth_support import ...`).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from plinth_compat import start_server, stop_server, uniq

ADMIN = "admin"
ADMIN_PASSWORD = "bootstrap-" + secrets.token_hex(12)

AUTH_ENV = {
    "PLINTH__AUTH__ENABLED": "true",
    "PLINTH__AUTH__BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
    # Tests make many deliberate failures from 127.0.0.1; never let the per-address limit refuse them.
    "PLINTH__AUTH__MAX_FAILURES_PER_ADDRESS": "100000",
}

CRED_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_AUTH")

# Every password and token secret this module hands out or presents: none may ever show in the trail.
SECRETS: list[str] = [ADMIN_PASSWORD]


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """This module's server (overrides conftest's): auth on, with a bootstrap admin."""
    srv = start_server(tmp_path_factory.mktemp("plinth-auth"), env=AUTH_ENV)
    yield srv
    stop_server(srv)


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch):
    """Each test starts anonymous; whatever it sets is undone by monkeypatch afterwards."""
    for var in CRED_VARS:
        monkeypatch.delenv(var, raising=False)


# ---------------------------------------------------------------------------------------------
# Helpers


class Api:
    """Plinth's native API (/api/plinth/v1) with real credentials: `auth` is (user, password) or a token."""

    PREFIX = "/api/plinth/v1"

    def __init__(self, base: str, user: str | None = None, password: str | None = None, token: str | None = None):
        self.base = base.rstrip("/")
        self.session = requests.Session()
        if user is not None:
            self.session.auth = (user, password)
        elif token is not None:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, body: Any = None, params: Any = None) -> requests.Response:
        if method.upper() == "GET" and params is None:
            body, params = None, body
        kw: dict[str, Any] = {"timeout": 60, "params": params}
        if body is not None:
            kw["json"] = body
        return self.session.request(method, self.base + self.PREFIX + path, **kw)

    def ok(self, method: str, path: str, body: Any = None, params: Any = None) -> dict:
        r = self.request(method, path, body, params)
        assert r.status_code == 200, f"{method} {path} {body!r:.300} -> {r.status_code} {r.text[:1000]}"
        return r.json() if r.content else {}


@dataclass
class User:
    name: str
    password: str
    role: str
    approver: bool


@pytest.fixture
def admin(tracking_server) -> Api:
    return Api(tracking_server.url, ADMIN, ADMIN_PASSWORD)


@pytest.fixture
def make_user(admin):
    def make(role: str = "member", approver: bool = False) -> User:
        name = uniq(role)
        password = "pw-" + secrets.token_urlsafe(18)
        SECRETS.append(password)
        body = {"name": name, "password": password, "role": role, "approver": approver}
        user = admin.ok("POST", "/users", body)["user"]
        assert user["name"] == name and user["role"] == role and user["approver"] is approver, user
        assert "password" not in json.dumps(user), user
        return User(name, password, role, approver)

    return make


@pytest.fixture
def make_token(admin):
    """A token for `user`, made by the admin: (id, secret)."""

    def make(user: str) -> tuple[str, str]:
        out = admin.ok("POST", "/tokens", {"name": uniq("tok"), "user": user})
        secret = out["secret"]
        SECRETS.append(secret)
        token = out["token"]
        assert token["user"] == user, out
        assert token["revoked_at"] is None, out
        assert secret.startswith("plt_"), out
        assert secret not in json.dumps(token), out
        return token["id"], secret

    return make


@pytest.fixture
def api_as(tracking_server):
    def make(user: User) -> Api:
        return Api(tracking_server.url, user.name, user.password)

    return make


def sign_in(monkeypatch, user: str | None = None, password: str | None = None, token: str | None = None) -> None:
    """Points the mlflow client's credentials at this principal (and only this one)."""
    for var in CRED_VARS:
        monkeypatch.delenv(var, raising=False)
    if user is not None:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    if token is not None:
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)


def as_user(monkeypatch, user: User) -> None:
    sign_in(monkeypatch, user.name, user.password)


def grant(owner_api: Api, user: User, kind: str, resource: str, level: str) -> None:
    owner_api.ok("PUT", "/grants", {"user": user.name, "kind": kind, "resource": resource, "level": level})
