"""Telegram transport: ``sendMessage`` through python-telegram-bot (``relaybox[telegram]``).

The contract
============

**SDK.** python-telegram-bot is asyncio-native (its HTTP layer is httpx), lets us set the API
base URL (``base_url``: a local Bot API server, or the fake in tests) and makes exactly one
request per call: it has no automatic retries unless one adds its optional rate limiter, which
we do not. relaybox alone decides what is resent.

**Recipient.** The Telegram ``chat_id`` (a number, negative for groups, or ``@channelname``).

**Answers.**

- ``ok``: surfaced, message id ``<chat id>/<message id>``.
- 429 (``RetryAfter``): rate limited for the platform's ``retry_after``; no attempt burned.
- 400 (``BadRequest``: chat not found, text too long, ...), 401/404 (``InvalidToken``), 403
  (``Forbidden``: the bot was blocked or kicked), ``ChatMigrated``: permanent, with Telegram's
  own description kept as the error text.
- other HTTP errors (5xx, ``NetworkError``): transient.
- connect or pool timeout, connection refused: transient (the request never left).
- read/write timeout, connection dropped after sending: **ambiguous**. Telegram does not
  deduplicate and a bot cannot read a chat's history back, so relaybox cannot reconcile: the
  delivery is parked as ``unknown`` for an operator (docs/platforms.md).

**Preset limits** (overridable per channel): 30 messages/s per bot, 1/s per chat, 20/min per
group (negative chat ids and ``@channels``), 4,096 characters per message.
"""

from __future__ import annotations

import asyncio
import datetime
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from relaybox.models import Outcome
from relaybox.transports._http import NOT_SENT_ERRORS
from relaybox.transports.base import (
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
from relaybox.validation import is_http_url

if TYPE_CHECKING:
    from relaybox.config import ChannelConfig
    from relaybox.inbound.platforms.base import InboundEndpoint

__all__ = ["TRANSPORT", "TelegramOptions", "TelegramTransport"]

DEFAULT_BASE_URL = "https://api.telegram.org"


@dataclass(frozen=True)
class TelegramOptions:
    """``[channels.x]`` keys of a ``transport = "telegram"`` channel."""

    token_env: str = "TELEGRAM_BOT_TOKEN"  # environment variable holding the bot token
    base_url: str = DEFAULT_BASE_URL  # a local Bot API server, or a fake in tests
    parse_mode: str | None = None  # "MarkdownV2" / "HTML"; None sends plain text
    disable_notification: bool = False
    webhook_secret_env: str = "TELEGRAM_WEBHOOK_SECRET"  # setWebhook's secret_token (inbound)

    def __post_init__(self) -> None:
        if not is_http_url(self.base_url):
            raise ValueError("base_url must be an http:// or https:// URL")


def _import_telegram() -> Any:
    try:
        import telegram
        import telegram.error
        import telegram.request
        import telegram.warnings
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        from relaybox.errors import ConfigError

        raise ConfigError(
            "the telegram transport needs python-telegram-bot: pip install 'relaybox[telegram]'"
        ) from error
    return telegram


class TelegramTransport:
    """Send parts with a python-telegram-bot ``Bot``. Safe to call concurrently."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout_seconds: float = 15.0,
        parse_mode: str | None = None,
        disable_notification: bool = False,
    ) -> None:
        self._tg = _import_telegram()
        self.timeout_seconds = timeout_seconds
        self._parse_mode = parse_mode
        self._silent = disable_notification
        self._request = self._tg.request.HTTPXRequest(
            connection_pool_size=64,
            connect_timeout=timeout_seconds,
            read_timeout=timeout_seconds,
            write_timeout=timeout_seconds,
            pool_timeout=timeout_seconds,
        )
        self._bot = self._tg.Bot(
            token, base_url=f"{base_url.rstrip('/')}/bot", request=self._request
        )
        self._ready = False
        self._ready_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return "TelegramTransport()"

    @property
    def dedups_by_guid(self) -> bool:
        return False  # Telegram has no idempotency key for sendMessage

    async def _start(self) -> None:
        # Only the HTTP client: Bot.initialize() would also call getMe on every start.
        async with self._ready_lock:
            if not self._ready:
                await self._request.initialize()
                self._ready = True

    async def send(self, part: OutgoingPart) -> SendResult:
        await self._start()
        error_mod = self._tg.error
        try:
            message = await self._bot.send_message(
                chat_id=part.recipient,
                text=part.text,
                parse_mode=self._parse_mode,
                disable_notification=self._silent,
            )
        except error_mod.RetryAfter as error:
            with warnings.catch_warnings():  # v22 warns that retry_after becomes a timedelta
                warnings.simplefilter("ignore", self._tg.warnings.PTBDeprecationWarning)
                wait = _seconds(error.retry_after)
            raise RateLimited(f"telegram: {error}", retry_after=wait) from error
        except error_mod.TimedOut as error:
            if isinstance(error.__cause__, NOT_SENT_ERRORS):
                raise ReceiverDown(f"telegram: could not connect: {error}") from error
            raise AmbiguousSend(f"telegram: no answer after sending: {error}") from error
        except (error_mod.BadRequest, error_mod.Forbidden, error_mod.InvalidToken) as error:
            raise PermanentError(f"telegram: {type(error).__name__}: {error}") from error
        except error_mod.ChatMigrated as error:
            raise PermanentError(
                f"telegram: chat migrated to {error.new_chat_id}: send to that id instead"
            ) from error
        except error_mod.NetworkError as error:
            cause = error.__cause__
            if isinstance(cause, NOT_SENT_ERRORS):
                raise ReceiverDown(f"telegram: could not connect: {error}") from error
            if isinstance(cause, httpx.HTTPError):
                raise AmbiguousSend(f"telegram: connection lost after sending: {error}") from error
            raise TransientError(f"telegram: {error}") from error
        except error_mod.TelegramError as error:
            raise TransientError(f"telegram: {type(error).__name__}: {error}") from error
        return SendResult(Outcome.SURFACED, message_id=f"{message.chat_id}/{message.message_id}")

    async def reconcile(self, part: OutgoingPart) -> SendResult | NotSent | None:
        return None  # a bot cannot read a chat's history: an operator decides

    async def aclose(self) -> None:
        if self._ready:
            self._ready = False
            await self._request.shutdown()


def _seconds(value: object) -> float | None:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _build(channel: ChannelConfig) -> TelegramTransport:
    options: TelegramOptions = channel.options
    return TelegramTransport(
        secret_from_env(options.token_env, f"channel {channel.name!r}"),
        base_url=options.base_url,
        timeout_seconds=channel.send_timeout_seconds,
        parse_mode=options.parse_mode,
        disable_notification=options.disable_notification,
    )


def _inbound(channel: ChannelConfig) -> InboundEndpoint:
    from relaybox.inbound.platforms.telegram import TelegramEndpoint

    options: TelegramOptions = channel.options
    where = f"channel {channel.name!r} (inbound)"
    return TelegramEndpoint(secret_from_env(options.webhook_secret_env, where))


def is_group(recipient: str) -> bool:
    """Groups and supergroups have negative chat ids; channels may be addressed as @name."""
    return recipient.startswith(("-", "@"))


TRANSPORT = TransportKind(
    name="telegram",
    build=_build,
    options=TelegramOptions,
    preset={
        "parts_per_second": 30.0,
        "thread_parts_per_second": 1.0,
        "group_parts_per_minute": 20.0,
        "max_part_chars": 4096,
    },
    is_group=is_group,
    inbound=_inbound,
    summary="Telegram Bot API sendMessage (python-telegram-bot); no dedup, no read-back",
)
