"""Plinth's webhooks (/api/plinth/v1/webhooks): registry events POSTed to a local receiver,
signed as MLflow signs them, retried with backoff on 5xx, never on 4xx."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from plinth_compat import Native, expect_error, start_server, stop_server, uniq, wait_for

pytestmark = pytest.mark.plinth_only

# Short delays, so retries happen within a test.
WEBHOOK_ENV = {
    "PLINTH__WEBHOOKS__INITIAL_BACKOFF_MS": "100",
    "PLINTH__WEBHOOKS__POLL_INTERVAL_MS": "100",
}
DEADLINE_S = 20.0


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """This module's server (overrides conftest's): webhook retries after 100 ms, not seconds."""
    srv = start_server(tmp_path_factory.mktemp("plinth-webhooks"), env=WEBHOOK_ENV)
    yield srv
    stop_server(srv)


@pytest.fixture
def api(tracking_server) -> Native:
    return Native(tracking_server.url)


# ---------------------------------------------------------------------------------------------
# A receiver on 127.0.0.1 that records every request.


class Receiver:
    def __init__(self):
        self.lock = threading.Lock()
        self.received: list[dict] = []
        self.fail_first = 0  # answer 500 to this many requests first
        self.always: int | None = None  # answer this status to every request
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    n = len(receiver.received)
                    if receiver.always is not None:
                        status = receiver.always
                    elif n < receiver.fail_first:
                        status = 500
                    else:
                        status = 200
                    receiver.received.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                            "status": status,
                            "at": time.time(),
                        }
                    )
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.received)

    def events(self) -> list[tuple[dict, dict]]:
        """(request, parsed body) for every request received."""
        return [(r, json.loads(r["body"])) for r in self.snapshot()]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def webhooks(api):
    """Creates webhooks and deletes them after the test, so later tests get no stray deliveries."""
    created: list[str] = []

    def create(url, events, secret=None, **extra) -> dict:
        body = {"name": uniq("hook"), "url": url, "events": events, **extra}
        if secret is not None:
            body["secret"] = secret
        hook = api.as_user("alice").ok("POST", "/webhooks", body)["webhook"]
        created.append(hook["id"])
        return hook

    yield create
    for hook_id in created:
        api.request("DELETE", f"/webhooks/{hook_id}")


def _signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def _assert_signed(req: dict, secret: str):
    h = req["headers"]
    delivery_id = h.get("x-mlflow-delivery-id")
    timestamp = h.get("x-mlflow-timestamp")
    assert delivery_id and timestamp and h.get("x-mlflow-signature"), h
    assert timestamp.isdigit(), timestamp
    assert abs(int(timestamp) - time.time()) < 300, timestamp
    assert h["x-mlflow-signature"] == _signature(secret, delivery_id, timestamp, req["body"]), (
        "bad signature",
        h,
        req["body"],
    )
    assert h.get("content-type", "").startswith("application/json"), h


def _event(body: dict) -> str:
    return f"{body['entity']}.{body['action']}"


def _deliveries(api, hook_id) -> list[dict]:
    return api.ok("GET", f"/webhooks/{hook_id}/deliveries")["deliveries"]


def _settled(api, hook_id, count) -> list[dict] | None:
    """The webhook's deliveries once there are `count` and none is PENDING."""
    got = _deliveries(api, hook_id)
    if len(got) >= count and all(d["status"] != "PENDING" for d in got):
        return got
    return None


def _new_model(client) -> str:
    name = uniq("hooked")
    client.create_registered_model(name)
    return name


def _no_secret(resp_text: str, secret: str):
    assert secret not in resp_text, resp_text
    assert '"secret"' not in resp_text, resp_text


# ---------------------------------------------------------------------------------------------


def test_deliveries_are_signed(client, api, receiver, webhooks):
    secret = "s3cret-" + uniq("k")
    events = ["model_version.created", "model_version_alias.created", "promotion_request.created"]
    hook = webhooks(receiver.url, events, secret=secret, description="for the test")
    assert hook["url"] == receiver.url
    assert hook["events"] == events
    assert hook["status"] == "ACTIVE"
    assert hook["description"] == "for the test"
    assert hook["id"] and hook["created_at"] > 0 and hook["updated_at"] >= hook["created_at"]
    assert "secret" not in hook

    name = _new_model(client)
    mv = client.create_model_version(name, source="s3://bucket/model", tags={"k": "v"})
    client.set_registered_model_alias(name, "champion", mv.version)
    promo = api.as_user("alice").ok(
        "POST", "/promotions", {"name": name, "version": mv.version, "target": "challenger", "reason": "why not"}
    )["promotion"]

    wanted = {
        ("model_version.created", None),
        ("model_version_alias.created", "champion"),
        ("model_version_alias.created", "challenger"),  # the promotion applied at once (no gate)
        ("promotion_request.created", None),
    }

    def arrived():
        got = {(_event(b), b["data"].get("alias")) for _, b in receiver.events() if b["data"].get("name") == name}
        return wanted <= got

    wait_for("the four deliveries", arrived, DEADLINE_S)

    received = receiver.events()
    assert {_event(b) for _, b in received} <= set(events), "an unsubscribed event was delivered"
    assert not any(b["entity"] == "registered_model" for _, b in received)
    by_event = {}
    for req, body in received:
        _assert_signed(req, secret)
        assert set(body) == {"entity", "action", "timestamp", "data"}, body
        assert isinstance(body["timestamp"], str) and body["timestamp"], body
        by_event.setdefault((_event(body), body["data"].get("alias")), []).append(body)

    (created,) = by_event[("model_version.created", None)]
    assert created["entity"] == "model_version" and created["action"] == "created"
    assert created["data"]["name"] == name
    assert str(created["data"]["version"]) == mv.version
    assert created["data"]["source"] == "s3://bucket/model"
    (alias,) = by_event[("model_version_alias.created", "champion")]
    assert alias["data"]["name"] == name
    assert str(alias["data"]["version"]) == mv.version
    (requested,) = by_event[("promotion_request.created", None)]
    assert requested["data"]["name"] == name
    assert str(requested["data"]["id"]) == promo["id"]
    assert requested["data"]["target"] == "challenger"
    assert requested["data"]["requester"] == "alice"
    assert str(requested["data"]["version"]) == mv.version

    deliveries = wait_for("deliveries to settle", lambda: _settled(api, hook["id"], 4), DEADLINE_S)
    assert len(deliveries) == 4, deliveries
    for d in deliveries:
        assert d["status"] == "SUCCEEDED", d
        assert d["attempts"] == 1, d
        assert d["last_status_code"] == 200, d
        assert d["event"] in events
        assert d["finished_at"] and d["created_at"]
    assert {d["id"] for d in deliveries} == {r["headers"]["x-mlflow-delivery-id"] for r, _ in received}


def test_retries_with_backoff_until_success(client, api, receiver, webhooks):
    receiver.fail_first = 2
    secret = uniq("secret")
    hook = webhooks(receiver.url, ["model_version.created"], secret=secret)
    name = _new_model(client)
    client.create_model_version(name, source="s3://bucket/model")

    (delivery,) = wait_for("the delivery to settle", lambda: _settled(api, hook["id"], 1), DEADLINE_S)
    assert delivery["status"] == "SUCCEEDED", delivery
    assert delivery["attempts"] == 3, delivery
    assert delivery["last_status_code"] == 200, delivery
    assert delivery["event"] == "model_version.created"

    got = receiver.snapshot()
    assert [r["status"] for r in got] == [500, 500, 200]
    # Every attempt is the same delivery, signed afresh.
    assert {r["headers"]["x-mlflow-delivery-id"] for r in got} == {delivery["id"]}
    assert len({r["body"] for r in got}) == 1
    for r in got:
        _assert_signed(r, secret)
    # Attempts are spaced out (100 ms, then 200 ms), not hammered.
    gaps = [b["at"] - a["at"] for a, b in zip(got, got[1:])]
    assert all(g >= 0.05 for g in gaps), gaps


def test_client_errors_are_not_retried(client, api, receiver, webhooks):
    receiver.always = 400
    hook = webhooks(receiver.url, ["model_version.created"], secret=uniq("secret"))
    name = _new_model(client)
    client.create_model_version(name, source="s3://bucket/model")

    (delivery,) = wait_for("the delivery to settle", lambda: _settled(api, hook["id"], 1), DEADLINE_S)
    assert delivery["status"] == "FAILED", delivery
    assert delivery["attempts"] == 1, delivery
    assert delivery["last_status_code"] == 400, delivery
    assert delivery["last_error"], delivery
    assert delivery["finished_at"], delivery
    assert len(receiver.snapshot()) == 1


def test_webhook_crud_never_shows_the_secret(api, receiver, webhooks):
    secret = "top-" + uniq("secret")
    hook = webhooks(receiver.url, ["model_version.created"], secret=secret, description="d")
    hook_id = hook["id"]

    r = api.request("GET", f"/webhooks/{hook_id}")
    assert r.status_code == 200, r.text
    _no_secret(r.text, secret)
    got = r.json()["webhook"]
    assert got == hook

    r = api.request("GET", "/webhooks")
    assert r.status_code == 200, r.text
    _no_secret(r.text, secret)
    assert hook_id in {w["id"] for w in r.json()["webhooks"]}

    new_secret = "new-" + uniq("secret")
    r = api.request(
        "PATCH",
        f"/webhooks/{hook_id}",
        {"name": "renamed", "events": ["model_version_alias.created"], "status": "DISABLED", "secret": new_secret},
    )
    assert r.status_code == 200, r.text
    _no_secret(r.text, new_secret)
    patched = r.json()["webhook"]
    assert patched["name"] == "renamed"
    assert patched["events"] == ["model_version_alias.created"]
    assert patched["status"] == "DISABLED"
    assert patched["url"] == receiver.url
    assert patched["description"] == "d"
    assert patched["updated_at"] >= hook["updated_at"]
    assert api.ok("GET", f"/webhooks/{hook_id}")["webhook"] == patched

    r = api.request("DELETE", f"/webhooks/{hook_id}")
    assert r.status_code == 200, r.text
    expect_error(api.request("GET", f"/webhooks/{hook_id}"), "RESOURCE_DOES_NOT_EXIST", 404)
    expect_error(api.request("GET", f"/webhooks/{hook_id}/deliveries"), "RESOURCE_DOES_NOT_EXIST", 404)
    expect_error(api.request("DELETE", f"/webhooks/{hook_id}"), "RESOURCE_DOES_NOT_EXIST", 404)
    assert hook_id not in {w["id"] for w in api.ok("GET", "/webhooks")["webhooks"]}


@pytest.mark.parametrize(
    "change",
    [
        {"events": ["model_version.exploded"]},
        {"events": []},
        {"events": ["model_version.created", "no.such_event"]},
        {"url": "ftp://127.0.0.1/hook"},
        {"url": "not a url"},
        {"name": ""},
    ],
)
def test_invalid_webhooks_are_rejected(api, receiver, change):
    body = {"name": uniq("hook"), "url": receiver.url, "events": ["model_version.created"], "secret": "s", **change}
    r = api.request("POST", "/webhooks", body)
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)


def test_unknown_event_on_update(api, receiver, webhooks):
    hook = webhooks(receiver.url, ["model_version.created"], secret="s")
    r = api.request("PATCH", f"/webhooks/{hook['id']}", {"events": ["model_version.exploded"]})
    expect_error(r, "INVALID_PARAMETER_VALUE", 400)
    assert api.ok("GET", f"/webhooks/{hook['id']}")["webhook"]["events"] == ["model_version.created"]


def test_test_ping(api, receiver, webhooks):
    secret = uniq("secret")
    hook = webhooks(receiver.url, ["promotion_request.expired"], secret=secret)
    api.ok("POST", f"/webhooks/{hook['id']}/test", {})
    wait_for("the ping", lambda: receiver.snapshot(), DEADLINE_S)
    (req,) = receiver.snapshot()
    _assert_signed(req, secret)
    body = json.loads(req["body"])
    assert set(body) == {"entity", "action", "timestamp", "data"}
    (delivery,) = wait_for("the ping delivery", lambda: _settled(api, hook["id"], 1), DEADLINE_S)
    assert delivery["status"] == "SUCCEEDED"
    assert delivery["id"] == req["headers"]["x-mlflow-delivery-id"]
    expect_error(api.request("POST", f"/webhooks/{uniq('nohook')}/test", {}), "RESOURCE_DOES_NOT_EXIST", 404)


def test_disabled_webhook_gets_nothing(client, api, webhooks):
    active, disabled = Receiver(), Receiver()
    try:
        on = webhooks(active.url, ["model_version.created"], secret="a")
        off = webhooks(disabled.url, ["model_version.created"], secret="b", status="DISABLED")
        assert off["status"] == "DISABLED"
        name = _new_model(client)
        client.create_model_version(name, source="s3://bucket/model")
        wait_for("the active webhook's delivery", lambda: _settled(api, on["id"], 1), DEADLINE_S)
        assert _deliveries(api, off["id"]) == []
        assert disabled.snapshot() == []
    finally:
        active.close()
        disabled.close()


def test_every_registry_event(client, api, receiver, webhooks):
    all_events = [
        "registered_model.created",
        "model_version.created",
        "model_version_tag.set",
        "model_version_tag.deleted",
        "model_version_alias.created",
        "model_version_alias.deleted",
        "promotion_request.created",
        "promotion_request.approved",
        "promotion_request.rejected",
        "promotion_request.expired",
    ]
    secret = uniq("secret")
    webhooks(receiver.url, all_events, secret=secret)
    name = _new_model(client)
    mv = client.create_model_version(name, source="s3://bucket/model")
    client.set_model_version_tag(name, mv.version, "k", "v")
    client.delete_model_version_tag(name, mv.version, "k")
    client.set_registered_model_alias(name, "temp", mv.version)
    client.delete_registered_model_alias(name, "temp")
    api.as_user("alice").ok("PUT", f"/registered-models/{name}/gates/champion", {"approvals_required": 1})
    alice = api.as_user("alice")
    approved = alice.ok("POST", "/promotions", {"name": name, "version": mv.version, "target": "champion"})
    api.as_user("bob").ok("POST", f"/promotions/{approved['promotion']['id']}/approve", {"comment": "ok"})
    rejected = alice.ok("POST", "/promotions", {"name": name, "version": mv.version, "target": "champion"})
    api.as_user("bob").ok("POST", f"/promotions/{rejected['promotion']['id']}/reject", {"comment": "no"})
    expiring = alice.ok(
        "POST", "/promotions", {"name": name, "version": mv.version, "target": "champion", "ttl_secs": 1}
    )
    time.sleep(2)
    assert api.ok("GET", f"/promotions/{expiring['promotion']['id']}")["promotion"]["status"] == "EXPIRED"

    def seen():
        return {_event(b) for _, b in receiver.events() if b["data"].get("name") == name}

    wait_for("every event", lambda: set(all_events) <= seen(), DEADLINE_S)
    for req, body in receiver.events():
        _assert_signed(req, secret)
        if body["data"].get("name") != name:
            continue
        if _event(body) == "promotion_request.approved":
            assert str(body["data"]["id"]) == approved["promotion"]["id"]
            assert body["data"]["actor"] == "bob"
        if _event(body) == "model_version_tag.set":
            assert body["data"]["key"] == "k" and body["data"]["value"] == "v"
        if _event(body) == "model_version_alias.deleted":
            assert body["data"]["alias"] == "temp"
