"""Email through the official `sendgrid` SDK, batched up to 1,000 personalizations.

The SDK is synchronous (urllib), so each request runs on a thread. Messages with
the same subject and bodies share one request; each recipient's differences
(acknowledgement link) travel as substitutions, and `custom_args` carry our
references so that SendGrid's events can be matched back to a delivery.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.error
from collections.abc import Sequence
from typing import Any, ClassVar

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from channels.base import ChannelKind, Message, Receipt
from channels.config import ChannelsConfig
from channels.errors import ChannelError, PermanentError, TransientError
from channels.limits import Limits
from channels.masking import mask_contact
from channels.retry import RetryPolicy, SleepFn

log = logging.getLogger(__name__)

#: SendGrid's limit of personalizations per mail/send request.
MAX_PERSONALIZATIONS = 1000


def _retry_after(headers: Any) -> float | None:
    if not headers:
        return None
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            pass
    after = headers.get("Retry-After")
    try:
        return max(0.0, float(after)) if after else None
    except ValueError:
        return None


def classify_http(status: int, body: str, headers: Any, recipient: str) -> ChannelError:
    fields = dict(provider="sendgrid", status=status, code=status, message=body[:300] or
                  f"HTTP {status}", recipient=recipient)
    if status == 429 or status >= 500:
        return TransientError(retry_after=_retry_after(headers), **fields)
    return PermanentError(recipient_specific=status not in (401, 403), **fields)


class SendGridEmail:
    """Email via SendGrid; one request per batch of identical messages."""

    kind: ClassVar[ChannelKind] = ChannelKind.EMAIL
    max_batch: ClassVar[int] = MAX_PERSONALIZATIONS

    def __init__(self, config: ChannelsConfig, *, sleep: SleepFn | None = None) -> None:
        if not config.sendgrid_api_key or not config.email_from:
            raise ValueError("SendGrid needs SENDGRID_API_KEY and ALN_EMAIL_FROM")
        self.config = config
        self.policy = RetryPolicy.from_config(config)
        self.limits = Limits(max(1, min(config.concurrency, 16)), config.email_rate_per_second)
        self._sleep = sleep
        self.client = SendGridAPIClient(config.sendgrid_api_key,
                                        host=config.sendgrid_api_url.rstrip("/"))
        self.client.client.timeout = config.timeout_seconds

    async def send(self, message: Message) -> Receipt:
        result = (await self.send_many([message]))[0]
        if isinstance(result, ChannelError):
            raise result
        return result

    async def send_many(self, messages: Sequence[Message]) -> list[Receipt | ChannelError]:
        results: list[Receipt | ChannelError | None] = [None] * len(messages)
        groups: dict[tuple[str | None, str, str | None], list[int]] = {}
        for i, m in enumerate(messages):
            groups.setdefault((m.subject, m.body, m.html), []).append(i)
        jobs = []
        for indexes in groups.values():
            for start in range(0, len(indexes), MAX_PERSONALIZATIONS):
                jobs.append(indexes[start:start + MAX_PERSONALIZATIONS])

        async def run(batch: list[int]) -> None:
            chunk = [messages[i] for i in batch]
            try:
                receipts = await self.policy.call(lambda: self._post(chunk), self._sleep)
            except ChannelError as exc:
                for i in batch:
                    results[i] = exc
                return
            for i, receipt in zip(batch, receipts, strict=True):
                results[i] = receipt

        await asyncio.gather(*(run(job) for job in jobs))
        return [r for r in results if r is not None]

    def payload(self, batch: Sequence[Message]) -> dict[str, Any]:
        first = batch[0]
        content = [{"type": "text/plain", "value": first.body}]
        if first.html:
            content.append({"type": "text/html", "value": first.html})
        personalizations = []
        for m in batch:
            custom = {k: str(v) for k, v in m.custom.items()}
            custom["aln_ref"] = m.reference
            p: dict[str, Any] = {"to": [{"email": m.to}], "custom_args": custom}
            if m.substitutions:
                p["substitutions"] = {k: str(v) for k, v in m.substitutions.items()}
            personalizations.append(p)
        return {"personalizations": personalizations, "from": {"email": self.config.email_from},
                "subject": first.subject or "(no subject)", "content": content}

    async def _post(self, batch: Sequence[Message]) -> list[Receipt]:
        recipient = mask_contact(batch[0].to) + (f" (+{len(batch) - 1})" if len(batch) > 1
                                                 else "")
        body = self.payload(batch)
        async with self.limits:
            try:
                response = await asyncio.to_thread(self.client.client.mail.send.post,
                                                   request_body=body)
            except HTTPError as exc:
                raw = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) \
                    else str(exc.body or "")
                raise classify_http(exc.status_code, raw, exc.headers, recipient) from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                raise TransientError(provider="sendgrid", status=None, code=None,
                                     message=f"{type(exc).__name__}: {exc}"[:300],
                                     recipient=recipient) from None
        message_id = response.headers.get("X-Message-Id", "") if response.headers else ""
        # One X-Message-Id covers the request; ".<n>" tells its recipients apart.
        return [Receipt(provider_id=f"{message_id}.{n}", status="accepted")
                for n in range(len(batch))]

    async def aclose(self) -> None:
        return None
