"""A real console server on loopback (port 0) for the console tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from relaybox.config import ConsoleConfig, default_config
from relaybox.console.app import create_app
from relaybox.console.auth import AuthSettings
from relaybox.console.server import ConsoleServer, listen
from relaybox.store import Store


@contextmanager
def console_server(
    store: Store, settings: AuthSettings | None = None, *, poll_seconds: float = 0.2
) -> Iterator[str]:
    """Serve the console for ``store`` on 127.0.0.1:<free port>; yield its base URL."""
    auth = settings or AuthSettings.from_config(ConsoleConfig(), environ={})
    app = create_app(store, default_config(), auth, poll_seconds=poll_seconds)
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = ConsoleServer(app, graceful_seconds=1)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the console server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def settings_with(**values: str) -> AuthSettings:
    """Credentials as the environment would give them (admin_token=..., viewer_password=...)."""
    return AuthSettings.from_config(
        ConsoleConfig(secret="test-secret-test-secret"),
        environ={f"RELAYBOX_CONSOLE_{k.upper()}": v for k, v in values.items()},
    )


XSS = "<script>window.__xss=1</script><img src=x onerror=window.__xss=2>"


def seed_store(url: str) -> dict[str, int]:
    """Deliveries in every interesting state on two channels, a failure, an inbound message;
    stored text carries script tags everywhere an operator sees it."""
    import asyncio

    import relaybox
    from relaybox.config import parse_config

    config = parse_config(
        {
            "channels": {
                "sms": {"transport": "memory", "max_attempts": 3},
                "chat": {"transport": "memory", "max_attempts": 3},
            }
        }
    )

    async def run() -> dict[str, int]:
        rb = relaybox.open(url, config=config)
        try:
            ids: dict[str, int] = {}
            got = await rb.record_inbound(
                channel="sms",
                external_id="m-1",
                thread_id=f"thread-{XSS}",
                resource_id="+1555",
                text=f"hello {XSS}",
            )
            ids["inbound"] = got.inbound.id
            reply = await rb.reply(got.inbound.id, [f"part one {XSS}", "part two"])
            ids["reply"] = reply.delivery.id
            for n, (channel, status) in enumerate(
                [
                    ("sms", "queued"),
                    ("sms", "queued"),
                    ("sms", "failed"),
                    ("sms", "failed"),
                    ("sms", "unknown"),
                    ("chat", "queued"),
                    ("chat", "failed"),
                    ("chat", "delivered"),
                ]
            ):
                made = await rb.enqueue(
                    channel=channel,
                    thread_id=f"t-{channel}-{n}",
                    recipient="r",
                    parts=["a", "b"],
                    reply_key=f"seed-{n}",
                )
                ids[f"{channel}-{status}-{n}"] = made.delivery.id
                if status != "queued":
                    await _set_status(rb, made.delivery.id, status, f"boom {XSS}")
            await _set_status(rb, ids["reply"], "failed", f"gateway said {XSS}")
            from relaybox.tasks.models import Conversation

            task = await rb.tasks.start(
                Conversation(channel="sms", thread_id=f"task-{XSS}", recipient="+1555"),
                f"book a table {XSS}",
            )
            ids["task"] = task.id
            try:
                raise RuntimeError(f"kaput {XSS}")
            except RuntimeError as error:
                raised = error
            ids["failure"] = int(
                await rb.record_failure(
                    "deliveries",
                    raised,
                    job_id=str(ids["reply"]),
                    stage="send",
                    channel="sms",
                    thread_id=f"thread-{XSS}",
                    correlation_id=got.correlation_id,
                    payload={"secret": "payload-contents", "x": XSS},
                )
                or 0
            )
            return ids
        finally:
            rb.close()

    return asyncio.run(run())


async def _set_status(rb: object, delivery_id: int, status: str, error: str) -> None:
    from relaybox.store import Tx

    def unit(tx: Tx) -> None:
        tx.execute_script(
            "UPDATE deliveries SET status = '{s}', finished_at = {now}, last_error = '{e}'"
            " WHERE id = {i}".format(
                s=status, now=time.time(), e=error.replace("'", "''"), i=int(delivery_id)
            )
        )

    await rb.store.run(unit)  # type: ignore[attr-defined]
