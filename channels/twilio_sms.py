"""SMS through the official `twilio` SDK, asynchronously.

The SDK has no base-URL option (`edge`/`region` only rewrite *.twilio.com), so a
subclass of its async HTTP client rewrites scheme and host to `ALN_TWILIO_API_URL`
(the simulator, a regional edge, a proxy). Its own retries stay off: the async
client would re-POST on every 5xx, a silent duplicate SMS. Errors are classified
by HTTP status first, then by a short list of codes (PROVIDERS.md).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import quote_plus, urlencode, urlsplit, urlunsplit

import aiohttp

# Twilio's client imports an API's resources when first used (`client.messages`): 92
# modules of the account tree, 0.1-0.2 s on the 2-core machine that stood between a
# fan-out's start and its first request. They are imported with this module instead.
import twilio.rest.api.v2010.account  # noqa: F401
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from twilio.rest.api.v2010.account.message import MessageList

from channels.base import ChannelKind, Message, Receipt
from channels.config import ChannelsConfig
from channels.errors import ChannelError, PermanentError, TransientError
from channels.limits import Limits
from channels.masking import mask_contact
from channels.retry import RetryPolicy, SleepFn

log = logging.getLogger(__name__)

#: Codes after which this recipient will not get the message on SMS.
PERMANENT_RECIPIENT_CODES = frozenset({21211, 21610, 21614, 21606, 21617, 21658})
#: Codes that say our configuration is wrong, not the recipient's number.
PERMANENT_ACCOUNT_CODES = frozenset({20003})
#: Codes that refuse this message, not the path: WhatsApp free text outside the session
#: (63016). The volunteer's other channels take over; the path stays live.
PERMANENT_MESSAGE_CODES = frozenset({63016})
#: Codes worth retrying whatever the HTTP status said.
TRANSIENT_CODES = frozenset({20429, 21611})

#: How a form body goes (what aiohttp sends for a dict of fields).
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
#: Form texts kept ready quoted: a fan-out's field names, body, sender and callback URL
#: are the same in every request, only the number changes.
QUOTED_CACHE = 256
#: Request URLs kept rewritten (one per resource path the SDK calls).
REWRITTEN_CACHE = 64
ASCII_DIGITS = "0123456789"

#: Retry-After seen on the last 429 of the current task (the SDK's exceptions carry no
#: headers, so the HTTP client records it where the caller can read it).
_retry_after: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "twilio_retry_after", default=None)


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


_quoted = functools.lru_cache(maxsize=QUOTED_CACHE)(quote_plus)


def encode_form(data: Mapping[str, Any]) -> bytes:
    """The very bytes `urlencode(list(data.items()), doseq=True)` makes (what aiohttp sends
    for a dict), with each text quoted once for the whole fan-out: quoting was a tenth of
    the event loop's time per message, spent on the same body over and over."""
    parts = []
    for key, value in data.items():
        if isinstance(key, str) and isinstance(value, str):
            parts.append(f"{_quoted(key)}={_quote_text(value)}")
        elif isinstance(key, str) and isinstance(value, int):  # numbers, booleans: text
            parts.append(f"{_quoted(key)}={_quoted(str(value))}")
        else:  # lists (MediaUrl), bytes, other keys: the standard rules
            parts.append(urlencode([(key, value)], doseq=True))
    return "&".join(part for part in parts if part).encode()


def _quote_text(value: str) -> str:
    # What changes from one request to the next is trailing digits: the number, the
    # callback URL's ref. Digits are never escaped, so only the text before them is
    # quoted (from the cache), and the cache is not churned by a new entry per request.
    stem = value.rstrip(ASCII_DIGITS)
    return _quoted(stem) + value[len(stem):]


class RewritingHttpClient(AsyncTwilioHttpClient):
    """Twilio's async client, sending to another base URL with a timeout and a pool cap."""

    def __init__(self, base_url: str, timeout: float, max_connections: int) -> None:
        super().__init__(pool_connections=False, timeout=timeout)
        self.base = urlsplit(base_url.rstrip("/"))
        # Must be created inside the running event loop (PROVIDERS.md).
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            timeout=aiohttp.ClientTimeout(total=timeout))
        # The same few URLs and credentials come with every request of a fan-out.
        self._rewritten: dict[str, str] = {}
        self._basic: tuple[Any, str] | None = None

    def rewrite(self, url: str) -> str:
        rewritten = self._rewritten.get(url)
        if rewritten is None:
            parts = urlsplit(url)
            rewritten = urlunsplit((self.base.scheme, self.base.netloc,
                                    self.base.path + parts.path, parts.query, ""))
            if len(self._rewritten) < REWRITTEN_CACHE:
                self._rewritten[url] = rewritten
        return rewritten

    def basic_auth(self, auth: Any) -> str:
        """The Authorization header for the SDK's (user, password), made once."""
        if self._basic is None or self._basic[0] != auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self._basic = (auth, f"Basic {token}")
        return self._basic[1]

    async def request(self, method: str, url: str, params: Any = None, data: Any = None,
                      headers: Any = None, auth: Any = None, timeout: float | None = None,
                      allow_redirects: bool = False) -> Response:
        headers = dict(headers or {})
        if auth:
            headers["Authorization"] = self.basic_auth(auth)
        if isinstance(data, dict):
            # Encoded here, to the very bytes aiohttp would send for the dict: its FormData
            # also builds a multipart writer (and a uuid4 boundary) per request, a tenth of
            # a large fan-out's event-loop time, only to throw them away.
            data = encode_form(data)
            headers.setdefault("Content-Type", FORM_CONTENT_TYPE)
        kwargs: dict[str, Any] = {
            "method": method.upper(), "url": self.rewrite(url), "params": params,
            "data": data, "headers": headers, "allow_redirects": allow_redirects,
        }
        if timeout:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout)
        assert self.session is not None
        async with self.session.request(**kwargs) as resp:
            text = await resp.text()
            if resp.status == 429:
                _retry_after.set(parse_retry_after(resp.headers.get("Retry-After")))
            return Response(resp.status, text, resp.headers)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


def classify(status: int | None, code: int | None, message: str, recipient: str,
             retry_after: float | None = None) -> ChannelError:
    """A Twilio failure as our error: by HTTP status first, then the code."""
    fields = dict(provider="twilio", status=status, code=code, message=message,
                  recipient=recipient)
    if code in TRANSIENT_CODES or status == 429 or (status is not None and status >= 500):
        return TransientError(retry_after=retry_after, **fields)
    if code in PERMANENT_MESSAGE_CODES or code in PERMANENT_ACCOUNT_CODES \
            or status in (401, 403):
        return PermanentError(recipient_specific=False, **fields)
    if code in PERMANENT_RECIPIENT_CODES or (status is not None and 400 <= status < 500):
        return PermanentError(recipient_specific=True, **fields)
    return TransientError(retry_after=retry_after, **fields)


class TwilioChannel:
    """What every Twilio channel shares: the SDK client on our HTTP client, the limits and
    the retry policy around each request, and one classification of its errors."""

    kind: ClassVar[ChannelKind]
    max_batch: ClassVar[int] = 1

    def __init__(self, config: ChannelsConfig, rate_per_second: float | None, *,
                 sleep: SleepFn | None = None) -> None:
        if not config.twilio_account_sid or not config.twilio_auth_token:
            raise ValueError("Twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        self.config = config
        self.policy = RetryPolicy.from_config(config)
        self.limits = Limits(config.concurrency, rate_per_second)
        self._sleep = sleep
        self._http: RewritingHttpClient | None = None
        self._client: Client | None = None
        self._messages: MessageList | None = None

    def _ensure_client(self) -> Client:
        if self._client is None:
            self._http = RewritingHttpClient(self.config.twilio_api_url,
                                             self.config.timeout_seconds,
                                             max(self.config.concurrency, 1))
            self._client = Client(self.config.twilio_account_sid, self.config.twilio_auth_token,
                                  http_client=self._http)
            self._messages = None
        return self._client

    def _messages_api(self) -> MessageList:
        """The client's Messages resource, looked up once (it is a chain of properties)."""
        client = self._ensure_client()
        if self._messages is None:
            self._messages = client.messages
        return self._messages

    async def send(self, message: Message) -> Receipt:
        return await self.policy.call_fast(lambda: self._send_once(message), self._sleep)

    async def send_many(self, messages: Sequence[Message]) -> list[Receipt | ChannelError]:
        async def one(m: Message) -> Receipt | ChannelError:
            try:
                return await self.send(m)
            except ChannelError as exc:
                return exc

        return list(await asyncio.gather(*(one(m) for m in messages)))

    async def _send_once(self, message: Message) -> Receipt:
        raise NotImplementedError

    async def _create(self, request: Callable[[], Awaitable[Any]], to: str) -> Any:
        """One create request under the limits; a failure as our error (`classify`), naming
        the recipient `to` masked (masked only then: most requests succeed)."""
        _retry_after.set(None)
        async with self.limits:
            try:
                return await request()
            except TwilioRestException as exc:
                raise classify(exc.status, exc.code, str(exc.msg), mask_contact(to),
                               _retry_after.get()) from None
            except TwilioException as exc:
                # TwilioServiceException (RFC 9457 bodies) is not a TwilioRestException.
                status = getattr(exc, "status", None)
                code = getattr(exc, "code", None)
                raise classify(status if isinstance(status, int) else None,
                               code if isinstance(code, int) else None, str(exc)[:300],
                               mask_contact(to), _retry_after.get()) from None
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise TransientError(provider="twilio", status=None, code=None,
                                     message=f"{type(exc).__name__}: {exc}"[:300],
                                     recipient=mask_contact(to)) from None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
            self._client = None


class TwilioSMS(TwilioChannel):
    """SMS via Twilio; limits and the retry policy are applied to every request."""

    kind: ClassVar[ChannelKind] = ChannelKind.SMS
    body_maxlen: ClassVar[int] = 1600

    def __init__(self, config: ChannelsConfig, *, sleep: SleepFn | None = None) -> None:
        super().__init__(config, self.rate_per_second(config), sleep=sleep)
        self.check_sender(config)

    @classmethod
    def check_sender(cls, config: ChannelsConfig) -> None:
        if not (config.twilio_from_number or config.twilio_messaging_service_sid):
            raise ValueError("Twilio needs TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID")

    @classmethod
    def rate_per_second(cls, config: ChannelsConfig) -> float:
        return config.sms_rate_per_second

    async def _send_once(self, message: Message) -> Receipt:
        body = message.rendered(message.body) or ""
        kwargs: dict[str, Any] = {"to": message.to, "body": body}
        if self.config.twilio_messaging_service_sid:
            kwargs["messaging_service_sid"] = self.config.twilio_messaging_service_sid
        else:
            kwargs["from_"] = self.config.twilio_from_number
        validity = message.validity_seconds or None
        if validity:
            kwargs["validity_period"] = max(1, min(int(validity), 36000))
        return await self._create_message(message, kwargs, message.to)

    async def _create_message(self, message: Message, kwargs: dict[str, Any],
                              to: str) -> Receipt:
        """One Messages API request (status callback added), its failure as our error
        (naming `to`, masked)."""
        messages = self._messages_api()
        if self.config.status_callback_url:
            ref = f"?ref={message.reference}" if message.reference else ""
            kwargs["status_callback"] = self.config.status_callback_url + ref
        created = await self._create(lambda: messages.create_async(**kwargs), to)
        segments = int(created.num_segments) if str(created.num_segments or "").isdigit() else 1
        return Receipt(provider_id=str(created.sid), status=str(created.status or "queued"),
                       segments=segments)
