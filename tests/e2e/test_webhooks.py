"""Webhooks end to end: the official SDK manages endpoints on a live Postroom, real sends produce events that a
real HTTP receiver on loopback gets signed, batched and retried; 410, redirects, rotation, OAuth2, replay,
auto-disable, and the SSRF guard of a server that does not allow private destinations.

The webhook server runs on a database of its own (``own_backend``) with ``POSTROOM_WEBHOOK_ALLOW_PRIVATE=1`` (the
receiver is on loopback) and ``POSTROOM_WEBHOOK_RETRY_SCALE=0.001`` (the 1 m, 5 m, 30 m … ladder becomes 60 ms,
300 ms, 1.8 s …), so no other server's worker ever touches its outbox.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import pytest
from lettr import Lettr
from lettr._exceptions import ConflictError, NotFoundError, ValidationError
from pytest_httpserver import HTTPServer
from sqlalchemy import Connection, update
from werkzeug import Request, Response

from postroom.audit.service import Actor
from postroom.core.clock import utcnow
from postroom.models import webhooks
from postroom.webhooks import service as webhooks_service
from postroom.webhooks import verify
from tests.conftest import Backend, Server, bearer, mail_env
from tests.support.dns_server import DnsServer
from tests.support.smtp_sink import SmtpSink

HOOK_DOMAIN = "hooks.test"
T = TypeVar("T")


@pytest.fixture(scope="module")
def hooks_server(
    own_backend: Backend, tmp_path_factory: pytest.TempPathFactory, dns_server: DnsServer, smtp_sink: SmtpSink
) -> Iterator[Server]:
    from postroom.domains import service as domains_service

    own_backend.write(
        lambda conn: domains_service.add_domain(
            conn, team_id=own_backend.team_id, name=HOOK_DOMAIN, approve=True, actor=Actor(name="tests"), now=utcnow(),
            settings=own_backend.settings,
        )
    )  # fmt: skip
    env = {
        **mail_env(dns_server, smtp_sink),
        "POSTROOM_WEBHOOK_ALLOW_PRIVATE": "1",
        "POSTROOM_WEBHOOK_RETRY_SCALE": "0.001",
        # No SMTP listeners: their fixed default ports belong to the shared ``server`` fixture.
        "POSTROOM_SMTP_PORT": "0",
        "POSTROOM_SMTPS_PORT": "0",
        "POSTROOM_BOUNCE_PORT": "0",
    }
    log = tmp_path_factory.mktemp(f"hooks-{own_backend.name}") / "server.log"
    server = Server(own_backend, log, env=env).start()
    yield server
    server.stop()


@pytest.fixture
def client(hooks_server: Server, own_backend: Backend, receiver: HTTPServer) -> Iterator[Lettr]:
    receiver.clear()
    lettr = Lettr(own_backend.create_key().key, base_url=hooks_server.api_url)
    yield lettr
    for hook in lettr.webhooks.list():  # no endpoint outlives its test and catches the next test's events
        lettr.webhooks.delete(hook.id)


class Inbox:
    """What the receiver got at one path: raw bodies and headers, answered by a script."""

    def __init__(self, receiver: HTTPServer, path: str, answer: Callable[[Request, int], Response] | None = None):
        self.path = path
        self.url = f"http://127.0.0.1:{receiver.port}{path}"
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._answer = answer or (lambda request, n: Response("ok", status=200))

        def handle(request: Request) -> Response:
            with self._lock:
                self.requests.append((request.get_data(), dict(request.headers)))
                count = len(self.requests)
            return self._answer(request, count)

        receiver.expect_request(path, method="POST").respond_with_handler(handle)

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            bodies = [body for body, _ in self.requests]
        return [event for body in bodies for item in json.loads(body) for event in item["msys"].values()]

    def wait_for(self, predicate: Callable[[Inbox], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver at {self.path} got {len(self.requests)} requests: {self.events()}")
            time.sleep(0.1)


def send(client: Lettr, **extra: Any) -> str:
    response = client.emails.send(
        from_email=f"news@{HOOK_DOMAIN}", to=["alice@example.test"], subject="Hooked", text="x", **extra
    )
    return response.request_id


def events_of(inbox: Inbox, request_id: str) -> list[str]:
    return sorted(e["type"] for e in inbox.events() if e["transmission_id"] == request_id)


def wait_until(check: Callable[[], T], timeout: float = 30, what: str = "condition") -> T:
    """What ``check`` returns once it is true (polled every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return result


# -- management through the SDK ------------------------------------------------------------------------------


def test_sdk_webhook_methods_manage_an_endpoint(client: Lettr, hooks_server: Server, receiver: HTTPServer) -> None:
    url = f"http://127.0.0.1:{receiver.port}/managed"
    created = client.webhooks.create(
        name="Orders", url=url, auth_type="basic", events_mode="selected",
        events=["delivery", "engagament.click", "message.bounce", "delivery"],
        auth_username="hook", auth_password="s3cret",
    )  # fmt: skip
    assert created.id.startswith("webhook-")
    assert created.enabled and created.auth_type == "basic" and created.has_auth_credentials
    assert created.event_types == ["message.delivery", "engagement.click", "message.bounce"]
    assert created.last_status is None

    [listed] = client.webhooks.list()
    assert listed.id == created.id and listed.url == url
    fetched = client.webhooks.get(created.id)
    assert fetched.name == "Orders"

    with pytest.warns(DeprecationWarning):
        moved = client.webhooks.update(created.id, target=url + "/v2", name="Orders v2")
    assert moved.url == url + "/v2" and moved.name == "Orders v2"
    changed = client.webhooks.update(created.id, events=["bounce"], active=False, auth_type="none")
    assert changed.event_types == ["message.bounce"] and not changed.enabled
    assert changed.auth_type == "none" and not changed.has_auth_credentials

    patched = httpx.patch(
        f"{hooks_server.api_url}/webhooks/{created.id}",
        json={"url": url + "/v3", "active": True},
        headers=bearer(client._client._api_key),  # noqa: SLF001 - the key this client holds
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"]["url"] == url + "/v3" and patched.json()["data"]["enabled"] is True

    client.webhooks.delete(created.id)
    with pytest.raises(NotFoundError) as missing:
        client.webhooks.get(created.id)
    assert missing.value.message == "Webhook not found."
    with pytest.raises(NotFoundError):
        client.webhooks.delete(created.id)


def test_the_signing_secret_is_shown_on_create_and_rotate_only(client: Lettr, hooks_server: Server) -> None:
    key = client._client._api_key  # noqa: SLF001
    api = hooks_server.api_url
    body = {"name": "raw", "url": "http://127.0.0.1:9/raw", "auth_type": "none", "events_mode": "all"}
    created = httpx.post(f"{api}/webhooks", json=body, headers=bearer(key))
    assert created.status_code == 201
    data = created.json()["data"]
    assert data["signing_secret"].startswith("whsec_") and data["event_types"] is None
    read = httpx.get(f"{api}/webhooks/{data['id']}", headers=bearer(key)).text
    listed = httpx.get(f"{api}/webhooks", headers=bearer(key)).text
    assert data["signing_secret"] not in read + listed and "whsec_" not in read + listed
    rotated = httpx.post(f"{api}/webhooks/{data['id']}/rotate-secret", json={}, headers=bearer(key))
    assert rotated.status_code == 200
    assert rotated.json()["data"]["signing_secret"] not in (None, data["signing_secret"])
    again = httpx.post(f"{api}/webhooks/{data['id']}/rotate-secret", json={}, headers=bearer(key))
    assert again.status_code == 409 and again.json()["error_code"] == "webhook_conflict"
    forced = httpx.post(f"{api}/webhooks/{data['id']}/rotate-secret", json={"force": True}, headers=bearer(key))
    assert forced.status_code == 200


def test_create_validation_and_duplicates(client: Lettr, receiver: HTTPServer) -> None:
    url = f"http://127.0.0.1:{receiver.port}/dupe"
    client.webhooks.create(name="one", url=url, auth_type="none", events_mode="all")
    with pytest.raises(ConflictError) as conflict:
        client.webhooks.create(name="two", url=url, auth_type="none", events_mode="all")
    assert conflict.value.message == "A webhook with this target URL already exists."
    assert conflict.value.error_code == "resource_already_exists"
    with pytest.raises(ValidationError) as invalid:
        client.webhooks.create(
            name="", url="ftp://x.test/", auth_type="basic", events_mode="selected", events=["nope"],
            auth_username="u",
        )  # fmt: skip
    errors = invalid.value.errors
    assert set(errors) >= {"name", "url", "auth_password", "events.0"}
    with pytest.raises(ValidationError) as no_events:
        client.webhooks.create(name="x", url=url + "2", auth_type="oauth2", events_mode="selected")
    assert set(no_events.value.errors) >= {"events", "oauth_client_id", "oauth_client_secret", "oauth_token_url"}


# -- delivery ---------------------------------------------------------------------------------------------------


def test_a_sends_events_arrive_signed_batched_and_verifiable(client: Lettr, receiver: HTTPServer) -> None:
    inbox = Inbox(receiver, "/signed")
    raw = httpx.post(
        f"{client._client._base_url}/webhooks",  # noqa: SLF001
        json={"name": "signed", "url": inbox.url, "auth_type": "basic", "events_mode": "all",
              "auth_username": "hook", "auth_password": "pässword"},
        headers=bearer(client._client._api_key),  # noqa: SLF001
    )  # fmt: skip
    assert raw.status_code == 201, raw.text
    secret = raw.json()["data"]["signing_secret"]
    webhook_id = raw.json()["data"]["id"]

    request_id = send(client, metadata={"order": "42"}, tag="receipts")
    inbox.wait_for(lambda box: events_of(box, request_id) == ["delivery", "injection"])

    for body, headers in inbox.requests:
        header = headers["Lettr-Signature"]
        assert verify(body, header, secret)
        fields = dict(part.split("=", 1) for part in header.split(","))
        assert abs(int(fields["t"]) - time.time()) < 60
        expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(fields["v1"], expected)
        assert not verify(body + b" ", header, secret)
        assert headers["Lettr-Event-Batch-Id"].startswith("whd_")
        assert headers["Lettr-Webhook-Id"] == webhook_id
        assert headers["Content-Type"] == "application/json"
        assert headers["Authorization"] == "Basic aG9vazpww6Rzc3dvcmQ="  # hook:pässword, UTF-8

    events = {e["type"]: e for e in inbox.events() if e["transmission_id"] == request_id}
    delivery = events["delivery"]
    assert delivery["event_name"] == "message.delivery"
    assert delivery["rcpt_to"] == "alice@example.test"
    assert delivery["rcpt_meta"] == {"order": "42"}
    assert delivery["tags"] == ["receipts"] == delivery["rcpt_tags"]
    assert delivery["friendly_from"] == f"news@{HOOK_DOMAIN}" and delivery["subject"] == "Hooked"
    assert delivery["timestamp"].isdigit() and delivery["event_id"].isdigit()
    assert delivery["message_id"] and events["injection"]["event_name"] == "message.injection"
    # The outcome is recorded once the receiver's answer is in: a moment after the receiver saw the request.
    wait_until(lambda: client.webhooks.get(webhook_id).last_status == "success", what="the success to be recorded")
    assert client.webhooks.get(webhook_id).last_successful_at is not None


def test_only_subscribed_event_types_are_sent(client: Lettr, receiver: HTTPServer) -> None:
    inbox = Inbox(receiver, "/only-deliveries")
    client.webhooks.create(name="d", url=inbox.url, auth_type="none", events_mode="selected", events=["delivery"])
    request_id = send(client)
    inbox.wait_for(lambda box: events_of(box, request_id) == ["delivery"])
    time.sleep(1.5)  # a stray injection batch would have arrived by now
    assert events_of(inbox, request_id) == ["delivery"]


def test_every_recipients_events_reach_every_subscribed_endpoint(client: Lettr, receiver: HTTPServer) -> None:
    """A send's and a delivery's events are recorded together (one unit of work each) and fan out to each endpoint."""
    everything = Inbox(receiver, "/many-all")
    deliveries = Inbox(receiver, "/many-deliveries")
    client.webhooks.create(name="all", url=everything.url, auth_type="none", events_mode="all")
    client.webhooks.create(
        name="deliveries", url=deliveries.url, auth_type="none", events_mode="selected", events=["delivery"]
    )
    recipients = [f"r{n}@example.test" for n in range(5)]
    response = client.emails.send(
        from_email=f"news@{HOOK_DOMAIN}", to=recipients[:3], cc=recipients[3:4], bcc=recipients[4:], subject="Many",
        text="x",
    )  # fmt: skip
    request_id = response.request_id
    everything.wait_for(lambda box: events_of(box, request_id) == ["delivery"] * 5 + ["injection"] * 5)
    deliveries.wait_for(lambda box: events_of(box, request_id) == ["delivery"] * 5)
    time.sleep(1.5)  # a stray or repeated batch would have arrived by now
    for inbox, types in ((everything, {"delivery", "injection"}), (deliveries, {"delivery"})):
        got = [(e["type"], e["rcpt_to"]) for e in inbox.events() if e["transmission_id"] == request_id]
        assert sorted(got) == sorted((t, r) for t in types for r in recipients)  # each once, none twice


def test_a_receiver_failing_three_times_gets_each_batch_once_more_than_it_failed(
    client: Lettr, receiver: HTTPServer, hooks_server: Server
) -> None:
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def flaky(request: Request, _: int) -> Response:
        with lock:
            seen[request.headers["Lettr-Event-Batch-Id"]] += 1
            count = seen[request.headers["Lettr-Event-Batch-Id"]]
        return Response("busy", status=503) if count <= 3 else Response("ok", status=200)

    inbox = Inbox(receiver, "/flaky", flaky)
    hook = client.webhooks.create(name="flaky", url=inbox.url, auth_type="none", events_mode="all")
    request_id = send(client)
    key = client._client._api_key  # noqa: SLF001

    def deliveries() -> list[dict[str, Any]]:
        answer = httpx.get(f"{hooks_server.api_url}/webhooks/{hook.id}/deliveries", headers=bearer(key))
        return list(answer.json()["data"]["deliveries"])

    def settled() -> bool:
        # The inbox first: once it holds the events, their batch is committed and the listing cannot be empty.
        types = events_of(inbox, request_id)
        batches = deliveries()
        return (
            "delivery" in types and "injection" in types and bool(batches)
            and all(b["status"] == "succeeded" for b in batches)
        )  # fmt: skip

    wait_until(settled, timeout=60, what="every batch to succeed")
    time.sleep(2)  # nothing more may come
    batches = deliveries()
    assert batches and set(seen) == {b["id"] for b in batches}
    assert all(count == 4 for count in seen.values()), seen
    for batch in batches:
        assert batch["attempts"] == 4 and batch["last_status_code"] == 200
        assert [a["status_code"] for a in batch["log"]] == [503, 503, 503, 200]
        assert [a["success"] for a in batch["log"]] == [False, False, False, True]
        assert all(a["latency_ms"] >= 0 and a["trigger"] == "schedule" for a in batch["log"])
        assert batch["log"][0]["response_excerpt"] == "busy"
    # Each batch's body is the same on every attempt: the receiver can de-duplicate by batch id.
    bodies: dict[str, set[bytes]] = {}
    for body, headers in inbox.requests:
        bodies.setdefault(headers["Lettr-Event-Batch-Id"], set()).add(body)
    assert all(len(b) == 1 for b in bodies.values())


def test_410_gone_disables_the_endpoint_at_once(client: Lettr, receiver: HTTPServer, own_backend: Backend) -> None:
    inbox = Inbox(receiver, "/gone", lambda request, n: Response("gone", status=410))
    hook = client.webhooks.create(name="gone", url=inbox.url, auth_type="none", events_mode="all")
    send(client)
    wait_until(lambda: not client.webhooks.get(hook.id).enabled, what="the endpoint to be disabled")
    time.sleep(2)
    assert len(inbox.requests) == 1  # no retry, and the delivery event is never sent
    disabled = client.webhooks.get(hook.id)
    assert disabled.last_status == "failure" and disabled.last_failure_at is not None
    alerts = own_backend.read(lambda conn: webhooks_service.list_alerts(conn, team_id=own_backend.team_id))
    assert any(a.webhook_id == hook.id and a.kind == "disabled_gone" for a in alerts)


def test_redirects_are_failures_and_are_never_followed(
    client: Lettr, receiver: HTTPServer, hooks_server: Server
) -> None:
    target = Inbox(receiver, "/redirect-target")
    inbox = Inbox(receiver, "/redirect", lambda request, n: Response("", status=302, headers={"Location": target.url}))
    hook = client.webhooks.create(name="moved", url=inbox.url, auth_type="none", events_mode="all")
    send(client)
    inbox.wait_for(lambda box: len(box.requests) >= 3)
    assert target.requests == []
    hook_state = client.webhooks.get(hook.id)
    assert hook_state.last_status == "failure" and hook_state.enabled
    key = client._client._api_key  # noqa: SLF001
    batches = httpx.get(f"{hooks_server.api_url}/webhooks/{hook.id}/deliveries", headers=bearer(key)).json()
    logs = [a for b in batches["data"]["deliveries"] for a in b["log"]]
    assert logs and all(a["status_code"] == 302 and not a["success"] for a in logs)


def test_during_a_rotation_both_secrets_sign_and_after_it_only_the_new_one(
    client: Lettr, receiver: HTTPServer, hooks_server: Server
) -> None:
    inbox = Inbox(receiver, "/rotating")
    key = client._client._api_key  # noqa: SLF001
    api = hooks_server.api_url
    body = {"name": "rot", "url": inbox.url, "auth_type": "none", "events_mode": "selected", "events": ["injection"]}
    created = httpx.post(f"{api}/webhooks", json=body, headers=bearer(key)).json()["data"]
    old = created["signing_secret"]
    new = httpx.post(f"{api}/webhooks/{created['id']}/rotate-secret", json={"overlap_hours": 24},
                     headers=bearer(key)).json()["data"]["signing_secret"]  # fmt: skip
    first = send(client)
    inbox.wait_for(lambda box: events_of(box, first) == ["injection"])
    [(body_1, headers_1)] = inbox.requests
    assert headers_1["Lettr-Signature"].count("v1=") == 2
    assert verify(body_1, headers_1["Lettr-Signature"], old) and verify(body_1, headers_1["Lettr-Signature"], new)

    assert httpx.delete(f"{api}/webhooks/{created['id']}/previous-secret", headers=bearer(key)).status_code == 200
    second = send(client)
    inbox.wait_for(lambda box: events_of(box, second) == ["injection"])
    body_2, headers_2 = inbox.requests[-1]
    assert headers_2["Lettr-Signature"].count("v1=") == 1
    assert verify(body_2, headers_2["Lettr-Signature"], new) and not verify(body_2, headers_2["Lettr-Signature"], old)


def test_oauth2_tokens_are_fetched_once_and_sent_as_bearer(client: Lettr, receiver: HTTPServer) -> None:
    tokens = Inbox(
        receiver,
        "/oauth/token",
        lambda request, n: Response(
            json.dumps({"access_token": f"token-{n}", "token_type": "Bearer", "expires_in": 3600}),
            content_type="application/json",
        ),
    )
    inbox = Inbox(
        receiver,
        "/oauth-hook",
        lambda request, n: Response("ok" if request.headers.get("Authorization") == "Bearer token-1" else "no",
                                    status=200 if request.headers.get("Authorization") == "Bearer token-1" else 401),
    )  # fmt: skip
    client.webhooks.create(
        name="oauth", url=inbox.url, auth_type="oauth2", events_mode="selected", events=["injection"],
        oauth_client_id="client", oauth_client_secret="shh", oauth_token_url=tokens.url,
    )  # fmt: skip
    first, second = send(client), send(client)
    inbox.wait_for(lambda box: sorted(e["transmission_id"] for e in box.events()) == sorted([first, second]))
    assert len(tokens.requests) == 1
    token_body, token_headers = tokens.requests[0]
    assert token_body == b"grant_type=client_credentials"
    assert token_headers["Authorization"] == "Basic Y2xpZW50OnNoaA=="  # client:shh
    assert all(headers["Authorization"] == "Bearer token-1" for _, headers in inbox.requests)


def test_a_delivery_can_be_replayed_with_the_same_body_and_batch_id(
    client: Lettr, receiver: HTTPServer, hooks_server: Server
) -> None:
    inbox = Inbox(receiver, "/replay")
    hook = client.webhooks.create(name="r", url=inbox.url, auth_type="none", events_mode="selected",
                                  events=["injection"])  # fmt: skip
    request_id = send(client)
    inbox.wait_for(lambda box: events_of(box, request_id) == ["injection"])
    key = client._client._api_key  # noqa: SLF001
    api = hooks_server.api_url
    [batch] = httpx.get(f"{api}/webhooks/{hook.id}/deliveries", headers=bearer(key)).json()["data"]["deliveries"]
    replayed = httpx.post(f"{api}/webhooks/{hook.id}/deliveries/{batch['id']}/replay", headers=bearer(key))
    assert replayed.status_code == 202, replayed.text
    inbox.wait_for(lambda box: len(box.requests) == 2)
    (body_1, headers_1), (body_2, headers_2) = inbox.requests
    assert body_1 == body_2 and headers_1["Lettr-Event-Batch-Id"] == headers_2["Lettr-Event-Batch-Id"]

    def log_triggers() -> list[str]:
        answer = httpx.get(f"{api}/webhooks/{hook.id}/deliveries", headers=bearer(key)).json()
        [after] = answer["data"]["deliveries"]
        return [a["trigger"] for a in after["log"]]

    wait_until(lambda: len(log_triggers()) == 2, what="the replay to be logged")
    assert log_triggers() == ["schedule", "replay"]
    missing = httpx.post(f"{api}/webhooks/{hook.id}/deliveries/whd_nope/replay", headers=bearer(key))
    assert missing.status_code == 404


def test_five_days_of_failure_disable_the_endpoint_and_alert_the_team(
    client: Lettr, receiver: HTTPServer, own_backend: Backend
) -> None:
    inbox = Inbox(receiver, "/down", lambda request, n: Response("down", status=500))
    hook = client.webhooks.create(name="down", url=inbox.url, auth_type="none", events_mode="all")
    long_ago = utcnow() - timedelta(days=5, minutes=1)

    def backdate(conn: Connection) -> None:
        conn.execute(update(webhooks).where(webhooks.c.id == hook.id).values(failing_since=long_ago))

    own_backend.write(backdate)
    send(client)
    wait_until(lambda: not client.webhooks.get(hook.id).enabled, what="auto-disable")
    alerts = own_backend.read(lambda conn: webhooks_service.list_alerts(conn, team_id=own_backend.team_id))
    assert any(a.webhook_id == hook.id and a.kind == "disabled_failing" for a in alerts)
    count = len(inbox.requests)
    time.sleep(2)
    assert len(inbox.requests) == count  # nothing more is sent to a disabled endpoint


# -- the SSRF guard on a server that does not allow private destinations --------------------------------------


@pytest.fixture
def guarded(server: Server, backend: Backend, sending_domain: Any) -> Iterator[Lettr]:
    lettr = Lettr(backend.create_key().key, base_url=server.api_url)
    yield lettr
    for hook in lettr.webhooks.list():
        lettr.webhooks.delete(hook.id)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8025/x", "http://0x7f.1/", "http://2130706433/", "http://127.1/", "http://[::ffff:127.0.0.1]/",
     "http://169.254.169.254/latest", "http://metadata.hooks.test/", "http://localhost/", "http://[fd00:ec2::254]/"],
)  # fmt: skip
def test_registration_refuses_internal_destinations(guarded: Lettr, dns_server: DnsServer, url: str) -> None:
    dns_server.add("metadata.hooks.test", "A", "169.254.169.254")
    with pytest.raises(ValidationError) as refused:
        guarded.webhooks.create(name="ssrf", url=url, auth_type="none", events_mode="all")
    assert "url" in refused.value.errors
    assert url not in [hook.url for hook in guarded.webhooks.list()]


def test_a_name_rebound_to_loopback_after_registration_is_refused_at_delivery(
    guarded: Lettr, dns_server: DnsServer, server: Server, receiver: HTTPServer
) -> None:
    inbox = Inbox(receiver, "/rebound")
    dns_server.remove("rebind.hooks.test")  # the other backend's run of this test left it rebound
    dns_server.add("rebind.hooks.test", "A", "93.184.216.34")
    hook = guarded.webhooks.create(
        name="rebind", url=f"http://rebind.hooks.test:{receiver.port}/rebound", auth_type="none", events_mode="all"
    )
    dns_server.remove("rebind.hooks.test")
    dns_server.add("rebind.hooks.test", "A", "127.0.0.1")
    guarded.emails.send(from_email="news@sender.test", to=["bob@example.test"], subject="s", text="x")
    key = guarded._client._api_key  # noqa: SLF001

    def logged() -> list[dict[str, Any]]:
        answer = httpx.get(f"{server.api_url}/webhooks/{hook.id}/deliveries", headers=bearer(key)).json()
        return [a for b in answer["data"]["deliveries"] for a in b["log"]]

    wait_until(lambda: bool(logged()), what="a delivery attempt")
    attempt = logged()[0]
    assert attempt["status_code"] is None and not attempt["success"]
    assert attempt["error"] == "The destination is not allowed: it must be a public internet address."
    assert inbox.requests == []
