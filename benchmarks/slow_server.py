"""A loopback HTTP endpoint that answers each POST after a delay (or never): a slow phone.

asyncio, so a thousand requests can wait at once without a thread each. Used where the suite
needs deliveries held in flight: recovery (a send that hangs) and memory (1,000 slow sends).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable


class SlowServer:
    """Runs in a background thread; ``url`` is where relaybox's webhook transport posts."""

    def __init__(self, delay: Callable[[], float | None]) -> None:
        self._delay = delay  # seconds before answering; None = never answer
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self.received: list[tuple[float, str]] = []  # (arrival time, Idempotency-Key)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/send"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=4096)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    if ":" in line:
                        key, value = line.split(":", 1)
                        headers[key.strip().lower()] = value.strip()
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.received.append((time.time(), headers.get("idempotency-key", "")))
                delay = self._delay()
                if delay is None:
                    await asyncio.Event().wait()  # hang until the connection dies
                await asyncio.sleep(delay or 0.0)
                body = json.dumps({"message_id": "slow"}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client went away (a killed worker): nothing to answer
        except asyncio.CancelledError:
            return  # close(): end quietly (asyncio's stream callback would report the cancel)
        finally:
            writer.close()

    def close(self) -> None:
        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(5)
