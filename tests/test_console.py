"""The operator console over real HTTP on loopback, on SQLite and PostgreSQL: pages, the JSON
API, actions, bulk actions with preview and confirmation, roles, CSRF, escaping, bad input,
live events, and `relaybox serve` refusing to listen beyond loopback without credentials."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from _console import XSS, console_server, seed_store, settings_with
from relaybox.cli import app as cli_app
from relaybox.config import ConsoleConfig
from relaybox.console.auth import AuthSettings, check_bind
from relaybox.errors import ConfigError
from relaybox.outbox import inspect
from relaybox.store import Store, open_store


@pytest.fixture
def seeded(store_url: str) -> Iterator[tuple[Store, dict[str, int]]]:
    ids = seed_store(store_url)
    store = open_store(store_url)
    yield store, ids
    store.close()


@pytest.fixture(scope="module")
def empty_console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One console on an empty SQLite store for the many bad-input cases."""
    path = tmp_path_factory.mktemp("console") / "relaybox.db"
    store = open_store(f"sqlite:///{path}")
    with console_server(store) as base:
        yield base
    store.close()


def _csrf(client: httpx.Client, base: str) -> str:
    page = client.get(f"{base}/deliveries")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def test_overview_pages_and_api_agree_with_the_store(seeded: tuple[Store, dict[str, int]]):
    import time

    from relaybox.workers.transitions import WorkerRecord, register

    store, _ids = seeded
    now = time.time()
    paused = {"sms": {"paused_until": now + 60, "paused_since": now}}
    alive = WorkerRecord("w-<b>1</b>", "host-a", 41, "0.1", ("sms",), 64, now, channel_state=paused)
    store.run_sync(register(alive, now))
    store.run_sync(register(WorkerRecord("w-dead", "host-b", 42, "0.1", ("chat",), 8, 0.0), 0.0))
    with console_server(store) as base, httpx.Client() as client:
        data = client.get(f"{base}/api/v1/overview").json()
        by_channel = {c["channel"]: c for c in data["channels"]}
        assert by_channel["sms"]["queued"] == 2 and by_channel["sms"]["unknown"] == 1
        assert by_channel["sms"]["failed_last_hour"] == 3  # two seeded + the failed reply
        assert by_channel["chat"]["queued"] == 1 and by_channel["chat"]["failed_last_hour"] == 1
        assert by_channel["chat"]["delivered_last_hour"] == 1
        assert by_channel["sms"]["failures_last_hour"] == 1
        assert data["totals"]["queued"] == 3
        assert data["tasks"]["open"] == 1
        assert [w["id"] for w in data["workers"]] == ["w-<b>1</b>"]  # the dead one is not live
        assert by_channel["sms"]["paused_until"] == pytest.approx(now + 60)
        assert by_channel["chat"]["paused_until"] is None
        assert client.get(f"{base}/api/v1/tasks").json()[0]["id"] == _ids["task"]
        assert f'id="task-{_ids["task"]}"' in client.get(f"{base}/tasks").text
        html = client.get(f"{base}/").text
        assert 'data-worker="w-&lt;b&gt;1&lt;/b&gt;"' in html and "w-dead" not in html
        row = re.search(r'<tr data-channel="sms">(.*?)</tr>', html, re.S)
        assert row and re.search(r'class="num queued"><a [^>]*>2</a>', row.group(1))
        for window in ("1h", "6h", "24h"):
            charts = client.get(f"{base}/api/v1/charts", params={"window": window}).json()
            assert {s["name"] for s in charts["series"]} >= {"parts surfaced", "queue depth"}
            assert all(len(s["points"]) == 60 for s in charts["series"])
            depth = next(s for s in charts["series"] if s["name"] == "queue depth")
            assert depth["points"][-1] == 3
            assert client.get(f"{base}/", params={"window": window}).status_code == 200


def test_cached_chart_buckets_give_the_same_charts(seeded: tuple[Store, dict[str, int]]):
    import time

    from relaybox.console.queries import ChartCache, charts

    store, _ids = seeded
    later = time.time() + 600  # the seeded rows sit in buckets that are final by then
    for window in ("1h", "24h"):
        cold = store.read_sync(charts(window, now=later))
        cache = ChartCache()
        filling = store.read_sync(charts(window, now=later, cache=cache))
        warm = store.read_sync(charts(window, now=later, cache=cache))
        assert cold == filling == warm
        assert cache.get(cold.bucket_seconds, cold.since) is not None
        surfaced = next(s for s in cold.series if s.name == "failures")
        assert sum(surfaced.points) > 0


def test_deliveries_filters_paging_and_detail(seeded: tuple[Store, dict[str, int]]):
    store, ids = seeded
    with console_server(store) as base, httpx.Client() as client:
        api = f"{base}/api/v1/deliveries"
        failed_sms = client.get(api, params={"status": "failed", "channel": "sms"}).json()
        assert {d["channel"] for d in failed_sms["deliveries"]} == {"sms"}
        assert len(failed_sms["deliveries"]) == 3
        first = client.get(api, params={"limit": 4}).json()
        assert len(first["deliveries"]) == 4 and first["next_before_id"] is not None
        second = client.get(api, params={"limit": 4, "before_id": first["next_before_id"]}).json()
        seen = [d["id"] for d in first["deliveries"] + second["deliveries"]]
        assert seen == sorted(seen, reverse=True) and len(set(seen)) == 8
        corr = client.get(api, params={"thread": f"thread-{XSS}"}).json()["deliveries"]
        assert [d["id"] for d in corr] == [ids["reply"]]
        assert client.get(api, params={"since": "1h"}).json()["deliveries"]
        assert client.get(api, params={"until": "1h"}).json()["deliveries"] == []
        detail = client.get(f"{api}/{ids['reply']}").json()
        assert [p["index"] for p in detail["delivery"]["parts"]] == [0, 1]
        assert all(p["guid"] for p in detail["delivery"]["parts"])
        page = client.get(f"{base}/deliveries/{ids['reply']}").text
        assert "trace-link" in page and detail["delivery"]["parts"][0]["guid"] in page
        listing = client.get(f"{base}/deliveries", params={"status": "unknown"}).text
        assert f'id="delivery-{ids["sms-unknown-4"]}"' in listing


@pytest.mark.parametrize(
    ("path", "code", "words"),
    [
        ("/api/v1/deliveries?status=lost", 400, "unknown status 'lost'"),
        ("/api/v1/deliveries?since=yesterday", 400, "neither a duration"),
        ("/api/v1/deliveries?limit=0", 400, "limit"),
        ("/api/v1/deliveries?before_id=-3", 400, "before_id"),
        ("/api/v1/deliveries?channel=a%00b", 400, "NUL"),
        ("/api/v1/deliveries?since=1h&until=2h", 400, "since must be before until"),
        ("/api/v1/deliveries/abc", 400, "delivery_id"),
        ("/api/v1/deliveries/99999999999999999999999", 400, "delivery_id"),
        ("/api/v1/deliveries/424242", 404, "delivery 424242 does not exist"),
        ("/api/v1/failures/groups?by=mood", 400, "by"),
        ("/api/v1/trace?ref=nothing-here", 404, "nothing to trace"),
        ("/api/v1/gaps?older_than=soon", 400, "not a duration"),
        ("/api/v1/charts?window=2h", 400, "window"),
        ("/deliveries/abc", 400, "delivery id must be a whole number"),
        ("/deliveries/424242", 404, "does not exist"),
        ("/deliveries?status=%3Cscript%3E", 400, "unknown status"),
        ("/failures?by=mood", 400, "by must be one of"),
        ("/failures/0", 400, "between 1 and"),
        ("/?window=7y", 400, "window must be one of"),
        ("/gaps?older_than=-1", 400, "not a duration"),
        ("/api/v1/tasks?state=lost", 400, "unknown task state"),
        ("/tasks?state=lost", 400, "unknown task state"),
    ],
)
def test_bad_filters_and_ids_are_4xx_with_a_clear_message(
    empty_console: str, path: str, code: int, words: str
):
    response = httpx.get(empty_console + path)
    assert response.status_code == code, response.text
    assert words in response.text
    assert "Traceback" not in response.text
    if path.startswith("/api/"):
        assert set(response.json()) == {"error"}


def test_actions_cancel_retry_resolve_and_their_guards(seeded: tuple[Store, dict[str, int]]):
    store, ids = seeded
    with console_server(store) as base, httpx.Client() as client:
        api = f"{base}/api/v1/deliveries"
        cancelled = client.post(f"{api}/{ids['sms-queued-0']}/cancel", json={"reason": "dup"})
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        again = client.post(f"{api}/{ids['sms-queued-0']}/cancel", json={})
        assert again.status_code == 409 and "already cancelled" in again.json()["error"]
        retried = client.post(f"{api}/{ids['sms-failed-2']}/retry", json={})
        assert retried.json()["status"] == "queued"
        resolved = client.post(f"{api}/{ids['sms-unknown-4']}/resolve", json={"arrived": True})
        assert resolved.json()["status"] == "queued" and resolved.json()["start_index"] == 1
        wrong = client.post(f"{api}/{ids['sms-queued-1']}/resolve", json={"arrived": False})
        assert wrong.status_code == 409 and "not unknown" in wrong.json()["error"]
        # a page form: CSRF token from the page, then POST/redirect/GET
        token = _csrf(client, base)
        done = client.post(
            f"{base}/deliveries/{ids['chat-failed-6']}/retry",
            data={"csrf": token},
            follow_redirects=True,
        )
        assert done.status_code == 200 and 'id="status">queued<' in done.text
        assert "<td>retried</td><td>console:local" in done.text  # the events table
        detail = client.get(f"{api}/{ids['chat-failed-6']}").json()
        assert [(e["kind"], e["actor"]) for e in detail["events"]] == [("retried", "console:local")]
    assert store.read_sync(inspect.get_delivery(ids["chat-failed-6"])).status == "queued"
    assert "retried by console:local" in (
        store.read_sync(inspect.get_delivery(ids["chat-failed-6"])).last_error or ""
    )


def test_bulk_retry_previews_confirms_and_refuses_a_stale_count(
    seeded: tuple[Store, dict[str, int]],
):
    store, ids = seeded
    with console_server(store) as base, httpx.Client() as client:
        api = f"{base}/api/v1/deliveries/bulk"
        preview = client.get(f"{api}/preview", params={"action": "retry", "channel": "sms"})
        assert preview.json()["count"] == 4  # 3 failed + 1 unknown on sms
        failed_only = {"action": "retry", "channel": "sms", "status": "failed"}
        assert client.get(f"{api}/preview", params=failed_only).json()["count"] == 3
        wrong = client.get(f"{api}/preview", params={**failed_only, "status": "delivered"})
        assert wrong.status_code == 400 and "cannot retry delivered" in wrong.json()["error"]
        stale = client.post(api, json={**failed_only, "expected_count": 2})
        assert stale.status_code == 409 and "preview again" in stale.json()["error"]
        dry = client.post(api, json={**failed_only, "dry_run": True}).json()
        assert dry["matched"] == 3 and dry["changed"] == 0
        # the page flow: filter -> preview (count) -> confirm
        token = _csrf(client, base)
        confirm = client.post(
            f"{base}/deliveries/bulk/preview",
            data={"csrf": token, "action": "retry", "channel": "sms", "status": "failed"},
        )
        assert "<strong>3</strong> deliveries match" in confirm.text
        hidden = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', confirm.text))
        assert hidden["expected"] == "3"
        result = client.post(f"{base}/deliveries/bulk", data=hidden)
        assert "3 of 3 deliveries" in result.text
        left = client.get(f"{api}/preview", params=failed_only).json()["count"]
        assert left == 0
        cancel = client.post(api, json={"action": "cancel", "channel": "chat"}).json()
        assert cancel["changed"] == 1
        # who, what and how many: in the trace (API and page) of every delivery it touched
        story = client.get(
            f"{base}/api/v1/trace", params={"ref": f"delivery:{ids['sms-failed-3']}"}
        )
        said = [e["summary"] for e in story.json()["events"]]
        assert any("retried by console:local (one of 3 in action" in line for line in said), said
        page = client.get(f"{base}/trace", params={"ref": f"delivery:{ids['sms-failed-3']}"})
        assert "retried by console:local (one of 3 in action" in page.text
    statuses = {
        d.status
        for d in store.read_sync(inspect.list_deliveries(channel="sms", limit=50))
        if d.id in (ids["sms-failed-2"], ids["sms-failed-3"], ids["reply"])
    }
    assert statuses == {"queued"}


def test_roles_login_and_cross_site_requests(seeded: tuple[Store, dict[str, int]]):
    store, ids = seeded
    settings = settings_with(
        admin_token="admin-token-123",
        viewer_token="viewer-token-123",
        admin_password="admin-password",
    )
    with console_server(store, settings) as base, httpx.Client() as anon:
        # nobody: pages redirect to the login form, the API says 401
        assert anon.get(f"{base}/api/v1/overview").status_code == 401
        first = anon.get(f"{base}/deliveries?status=failed")
        assert first.status_code == 303 or first.url.path == "/login"
        viewer = {"Authorization": "Bearer viewer-token-123"}
        admin = {"Authorization": "Bearer admin-token-123"}
        assert anon.get(f"{base}/api/v1/overview", headers=viewer).status_code == 200
        assert (
            anon.get(f"{base}/api/v1/overview", headers={"Authorization": "Bearer no"}).status_code
            == 401
        )
        # a viewer reads, without payloads or tracebacks, and cannot act
        seen = anon.get(f"{base}/api/v1/failures/{ids['failure']}", headers=viewer).json()
        assert seen["payload"] is None and seen["traceback"] is None
        page = anon.get(f"{base}/failures/{ids['failure']}", headers=viewer).text
        assert "payload-contents" not in page and "admins only" in page
        refused = anon.post(
            f"{base}/api/v1/deliveries/{ids['sms-failed-2']}/retry", json={}, headers=viewer
        )
        assert refused.status_code == 403
        full = anon.get(f"{base}/api/v1/failures/{ids['failure']}", headers=admin).json()
        assert "payload-contents" in full["payload"] and "RuntimeError" in full["traceback"]
        # a person logs in; the session then needs the CSRF token for every POST
        with httpx.Client(base_url=base) as person:
            form = person.get("/login?next=/deliveries")
            token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
            bad = person.post("/login", data={"csrf": token, "user": "admin", "password": "x"})
            assert bad.status_code == 401 and "wrong user or password" in bad.text
            ok = person.post(
                "/login",
                data={
                    "csrf": token,
                    "user": "admin",
                    "password": "admin-password",
                    "next": "/deliveries",
                },
            )
            assert ok.status_code == 303 and ok.headers["location"] == "/deliveries"
            assert person.get("/deliveries").status_code == 200
            forged = person.post(f"/deliveries/{ids['sms-failed-2']}/retry", data={})
            assert forged.status_code == 403 and "CSRF" in forged.text
            foreign = person.post(
                f"/deliveries/{ids['sms-failed-2']}/retry",
                data={"csrf": token},
                headers={"Origin": "http://evil.example"},
            )
            assert foreign.status_code == 403
            json_foreign = person.post(
                f"/api/v1/deliveries/{ids['sms-failed-2']}/retry",
                json={},
                headers={"Origin": "http://evil.example"},
            )
            assert json_foreign.status_code == 403
            done = person.post(f"/deliveries/{ids['sms-failed-2']}/retry", data={"csrf": token})
            assert done.status_code == 303
    assert "retried by console:admin" in (
        store.read_sync(inspect.get_delivery(ids["sms-failed-2"])).last_error or ""
    )


def test_stored_text_is_escaped_on_every_page(seeded: tuple[Store, dict[str, int]]):
    store, ids = seeded
    pages = [
        "/",
        "/deliveries",
        f"/deliveries/{ids['reply']}",
        f"/deliveries?thread=thread-{XSS}",
        "/failures",
        "/failures?by=thread",
        f"/failures/{ids['failure']}",
        f"/trace?ref=inbound:{ids['inbound']}",
        "/gaps?older_than=0s",
        "/tasks",
        f"/trace?ref={XSS}",
    ]
    with console_server(store) as base, httpx.Client() as client:
        for path in pages:
            response = client.get(base + path)
            assert "<script>window.__xss" not in response.text, path
            assert "<img src=x" not in response.text, path
            assert "Content-Security-Policy" in response.headers
        assert (
            "&lt;script&gt;window.__xss=1&lt;/script&gt;"
            in client.get(f"{base}/deliveries/{ids['reply']}").text
        )


def test_live_events_fire_when_the_store_changes(store_url: str):
    import asyncio

    import relaybox

    store = open_store(store_url)
    try:
        with console_server(store, poll_seconds=0.05) as base:
            got_change = threading.Event()
            opened = threading.Event()

            def listen() -> None:
                with httpx.stream("GET", f"{base}/events", timeout=10) as stream:
                    for line in stream.iter_lines():
                        opened.set()
                        if line.startswith("event: change"):
                            got_change.set()
                            return

            reader = threading.Thread(target=listen, daemon=True)
            reader.start()
            assert opened.wait(5)

            async def enqueue() -> None:
                rb = relaybox.open(store_url)
                await rb.enqueue(channel="console", thread_id="t", recipient="r", parts=["hi"])
                rb.close()

            asyncio.run(enqueue())
            assert got_change.wait(5)
    finally:
        store.close()


def test_serve_refuses_non_loopback_without_credentials(sqlite_url: str):
    open_settings = AuthSettings.from_config(ConsoleConfig(), environ={})
    with pytest.raises(ConfigError, match=r"refusing to serve the console on 0\.0\.0\.0"):
        check_bind("0.0.0.0", open_settings)
    check_bind("127.0.0.1", open_settings)
    check_bind("::1", open_settings)
    check_bind("0.0.0.0", settings_with(admin_token="long-enough-token"))
    with pytest.raises(ConfigError, match="shorter than 8"):
        settings_with(admin_password="short")
    result = CliRunner().invoke(
        cli_app, ["--db", sqlite_url, "serve", "--host", "0.0.0.0", "--port", "0"], env={}
    )
    assert result.exit_code == 1
    assert "refusing to serve the console on 0.0.0.0 without credentials" in result.output
