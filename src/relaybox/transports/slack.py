"""Slack transport: ``chat.postMessage`` through slack_sdk's ``AsyncWebClient``
(``relaybox[slack]``).

The contract
============

**SDK.** slack_sdk's ``AsyncWebClient`` is asyncio-native (aiohttp), takes a ``base_url``
(the fake in tests) and accepts ``retry_handlers``: its default handler retries a request whose
connection failed, which is exactly how ``chat.postMessage`` posts twice when only the answer
was lost. We pass ``retry_handlers=[]``: relaybox alone decides what is resent.

**Recipient.** A conversation id (``C...``, ``G...``, ``D...``). A user id opens a DM, but
reconcile needs the conversation id to read history back, so prefer the ``D...`` id.

**Answers.**

- ``ok: true``: surfaced, message id ``<channel>/<ts>``.
- HTTP 429 (``ratelimited``): rate limited for ``Retry-After``; no attempt burned.
- HTTP 5xx, ``internal_error``, ``fatal_error``, ``service_unavailable``: transient.
- any other ``ok: false`` (``channel_not_found``, ``invalid_auth``, ``not_in_channel``,
  ``is_archived``, ``msg_too_long``, ...): permanent, with Slack's error code kept.
- could not connect: transient. Timeout or connection lost after sending: **ambiguous**.

**Reconcile.** Slack has no idempotency key, but a message carries *metadata*: every part is
posted with ``metadata = {"event_type": "relaybox_part", "event_payload": {"guid": ...}}``.
After an ambiguous send relaybox reads the conversation's latest messages
(``conversations.history``, ``include_all_metadata``; needs the ``channels:history`` /
``groups:history`` / ``im:history`` scope): the part's GUID found means delivered (its ``ts``
kept); not found in a history that reaches back past the part means not sent (sent again);
anything else (a busy channel, a missing scope, an error) means "cannot tell" and the delivery
is parked as ``unknown``.

**Preset limits** (overridable): 1 message/s per channel; 40,000 characters per message (Slack
advises 4,000 for readability: set ``max_part_chars = 4000`` with ``split_long_parts``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from relaybox.models import Outcome
from relaybox.transports.base import (
    NOT_SENT,
    AmbiguousSend,
    NotSent,
    OutgoingPart,
    PermanentError,
    RateLimited,
    ReceiverDown,
    SendResult,
    TransientError,
)
from relaybox.transports.options import secret_from_env
from relaybox.transports.registry import TransportKind
from relaybox.transports.webhook import parse_retry_after
from relaybox.validation import is_http_url

if TYPE_CHECKING:
    from relaybox.config import ChannelConfig
    from relaybox.inbound.platforms.base import InboundEndpoint

__all__ = ["METADATA_EVENT_TYPE", "TRANSPORT", "SlackOptions", "SlackTransport"]

DEFAULT_BASE_URL = "https://slack.com/api/"
METADATA_EVENT_TYPE = "relaybox_part"
_TRANSIENT_ERRORS = {
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
}


@dataclass(frozen=True)
class SlackOptions:
    """``[channels.x]`` keys of a ``transport = "slack"`` channel."""

    token_env: str = "SLACK_BOT_TOKEN"  # environment variable holding the xoxb- token
    base_url: str = DEFAULT_BASE_URL
    reconcile_history_limit: int = 200  # latest messages read back to reconcile a lost answer
    signing_secret_env: str = "SLACK_SIGNING_SECRET"  # the app's signing secret (inbound)

    def __post_init__(self) -> None:
        if not is_http_url(self.base_url):
            raise ValueError("base_url must be an http:// or https:// URL")
        if not 1 <= self.reconcile_history_limit <= 999:
            raise ValueError("reconcile_history_limit must be between 1 and 999")


def _import_slack() -> tuple[Any, Any, Any]:
    try:
        import aiohttp
        from slack_sdk.errors import SlackApiError, SlackClientError
        from slack_sdk.web.async_client import AsyncWebClient
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        from relaybox.errors import ConfigError

        raise ConfigError(
            "the slack transport needs slack_sdk and aiohttp: pip install 'relaybox[slack]'"
        ) from error
    return AsyncWebClient, (SlackApiError, SlackClientError), aiohttp


class SlackTransport:
    """Send parts with slack_sdk's ``AsyncWebClient`` (one per transport, no SDK retries)."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout_seconds: float = 15.0,
        reconcile_history_limit: int = 200,
    ) -> None:
        client_class, errors, self._aiohttp = _import_slack()
        self._api_error, self._client_error = errors
        self.timeout_seconds = timeout_seconds
        self._history_limit = reconcile_history_limit
        self._token = token
        self._base_url = base_url
        self._client_class = client_class
        self._session: Any = None
        self._client: Any = None

    def __repr__(self) -> str:
        return "SlackTransport()"

    @property
    def dedups_by_guid(self) -> bool:
        return False  # chat.postMessage has no idempotency key; reconcile reads metadata back

    def _get_client(self) -> Any:
        if self._client is None:
            # One aiohttp session for every send (the SDK would open one per request).
            self._session = self._aiohttp.ClientSession(
                timeout=self._aiohttp.ClientTimeout(total=self.timeout_seconds)
            )
            self._client = self._client_class(
                token=self._token,
                base_url=self._base_url,
                timeout=self.timeout_seconds,
                session=self._session,
                retry_handlers=[],
            )
        return self._client

    async def send(self, part: OutgoingPart) -> SendResult:
        aiohttp = self._aiohttp
        try:
            response = await self._get_client().chat_postMessage(
                channel=part.recipient,
                text=part.text,
                metadata={"event_type": METADATA_EVENT_TYPE, "event_payload": {"guid": part.guid}},
            )
        except self._api_error as error:
            raise self._api_failure(error) from error
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
            raise ReceiverDown(f"slack: could not connect: {error}") from error
        except (TimeoutError, aiohttp.ClientError) as error:
            detail = str(error) or type(error).__name__
            raise AmbiguousSend(f"slack: no answer after sending: {detail}") from error
        except self._client_error as error:
            raise TransientError(f"slack: {type(error).__name__}: {error}") from error
        channel = response.get("channel") or part.recipient
        return SendResult(Outcome.SURFACED, message_id=f"{channel}/{response.get('ts')}")

    @staticmethod
    def _api_failure(error: Any) -> Exception:
        response = error.response
        status = int(getattr(response, "status_code", 0) or 0)
        code = str(response.get("error") or f"HTTP {status}")
        if status == 429 or code == "ratelimited":
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return RateLimited(f"slack: {code}", retry_after=retry_after)
        if status >= 500:  # Slack is down: waited out, no attempt burned
            return ReceiverDown(f"slack: {code} (HTTP {status})")
        if code in _TRANSIENT_ERRORS:
            return TransientError(f"slack: {code} (HTTP {status})")
        return PermanentError(f"slack: {code}")

    async def reconcile(self, part: OutgoingPart) -> SendResult | NotSent | None:
        """Look for the part's GUID in the conversation's latest messages' metadata."""
        try:
            async with asyncio.timeout(self.timeout_seconds):
                response = await self._get_client().conversations_history(
                    channel=part.recipient,
                    limit=self._history_limit,
                    include_all_metadata=True,
                )
        except (TimeoutError, self._aiohttp.ClientError, self._client_error):
            return None
        messages = response.get("messages") or []
        for message in messages:
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == METADATA_EVENT_TYPE and payload.get("guid") == (
                part.guid
            ):
                return SendResult(Outcome.SURFACED, message_id=f"{part.recipient}/{message['ts']}")
        if response.get("has_more"):
            return None  # the part could be further back than we read
        return NOT_SENT

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session, self._client = self._session, None, None
            await session.close()


def _build(channel: ChannelConfig) -> SlackTransport:
    options: SlackOptions = channel.options
    return SlackTransport(
        secret_from_env(options.token_env, f"channel {channel.name!r}"),
        base_url=options.base_url,
        timeout_seconds=channel.send_timeout_seconds,
        reconcile_history_limit=options.reconcile_history_limit,
    )


def _inbound(channel: ChannelConfig) -> InboundEndpoint:
    from relaybox.inbound.platforms.slack import SlackEndpoint

    options: SlackOptions = channel.options
    where = f"channel {channel.name!r} (inbound)"
    return SlackEndpoint(secret_from_env(options.signing_secret_env, where))


TRANSPORT = TransportKind(
    name="slack",
    build=_build,
    options=SlackOptions,
    preset={"thread_parts_per_second": 1.0, "max_part_chars": 40_000},
    inbound=_inbound,
    summary="Slack chat.postMessage (slack_sdk AsyncWebClient, no SDK retries); reconciles",
)
