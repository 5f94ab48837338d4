"""A fake Twilio Messaging API: ``POST /2010-04-01/Accounts/{sid}/Messages.json``.

Basic auth (account SID, auth token), form parameters ``To``, ``From``, ``Body``; answers 201
with the message resource (``sid``, ``status: queued``, ``num_segments``) or Twilio's error
shape ``{"code": 21211, "message": "...", "status": 400}``.
"""

from __future__ import annotations

import base64
import re

from relaybox.asgi import Request, Send, send_response
from relaybox.testing.contract import Scenario
from relaybox.testing.fakes.base import FakePlatform, Shown
from relaybox.transports.twilio import segments

_ROUTE = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")


def _error(status: int, code: int, message: str) -> dict[str, object]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class FakeTwilio(FakePlatform):
    """Point the adapter at ``base_url = fake.url``."""

    platform = "twilio"

    def __init__(
        self,
        account_sid: str = "AC00000000000000000000000000000000",
        auth_token: str = "twilio-test-token",
        *,
        numbers: set[str] | None = None,
        hang_seconds: float = 30.0,
    ) -> None:
        super().__init__(hang_seconds=hang_seconds)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.numbers = numbers  # reachable "To" numbers; None: all

    def _authorized(self, request: Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"

    async def route(self, request: Request, send: Send) -> None:
        match = _ROUTE.match(request.path)
        if match is None or match.group(1) != self.account_sid or request.method != "POST":
            await send_response(
                send, 404, _error(404, 20404, "The requested resource was not found")
            )
            return
        if not self._authorized(request):
            await send_response(send, 401, _error(401, 20003, "Authenticate"))
            return
        await self._create(request, send)

    async def _create(self, request: Request, send: Send) -> None:
        form = request.form()
        to, sender, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        script = self.take_script(request)
        scenario = script.scenario if script else Scenario.OK
        if scenario is Scenario.HANG:
            await self.hang()
            await send_response(send, 504, _error(504, 20500, "Gateway Timeout"))
            return
        if scenario is Scenario.RATE_LIMITED:
            wait = int(script.retry_after) if script else 2
            body_429 = _error(429, 20429, "Too Many Requests")
            await send_response(send, 429, body_429, {"Retry-After": str(wait)})
            return
        if scenario is Scenario.SERVER_ERROR:
            await send_response(send, 500, _error(500, 20500, "Internal Server Error"))
            return
        if scenario is Scenario.BAD_TOKEN:
            await send_response(send, 401, _error(401, 20003, "Authenticate"))
            return
        if scenario is Scenario.UNKNOWN_CHAT or (
            self.numbers is not None and to not in self.numbers
        ):
            message = f"The 'To' number {to} is not a valid phone number."
            await send_response(send, 400, _error(400, 21211, message))
            return
        if not body or len(body) > 1600:
            await send_response(
                send,
                400,
                _error(
                    400, 21617, "The concatenated message body exceeds the 1600 character limit."
                ),
            )
            return
        sid = f"SM{self.new_id():032x}"
        self.show(
            Shown(to, body, sid, request.received_at, {"from": sender, "segments": segments(body)})
        )
        if scenario is Scenario.LOST:
            await self.hang()
            await send_response(send, 504, _error(504, 20500, "Gateway Timeout"))
            return
        resource = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": sender,
            "body": body,
            "status": "queued",
            "num_segments": str(segments(body)),
        }
        await send_response(send, 201, resource)
