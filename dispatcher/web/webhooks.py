"""Provider webhooks: Twilio inbound SMS, status callbacks and call key presses, SendGrid
events.

A request whose signature does not verify gets 403 and leaves nothing but a log
line. Twilio signs the public URL it called, so we verify against
`ALN_PUBLIC_URL` + path (+ query), never the host this app happens to see.
Malformed bodies get 4xx, never 5xx. Bodies are capped before they are read
(`dispatcher.web.limits.BodyLimit`: Content-Length checked, the stream counted).
"""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from channels.twilio_voice import say_twiml
from channels.webhooks import sendgrid_signature_valid, twilio_signature_valid, twiml_message
from dispatcher.domain import DEAD_DELIVERY_STATES
from dispatcher.receipts import TWILIO_STATUS, call_state, sendgrid_batch, status_batch
from dispatcher.replies.inbound import sms_batch
from dispatcher.replies.voice import gather_batch
from dispatcher.runtime import Runtime
from dispatcher.web.app_state import intake_of, runtime_of, wake_worker

log = logging.getLogger(__name__)
router = APIRouter(prefix="/webhooks", include_in_schema=False)

#: Most form fields we parse; a Twilio request has about twenty (more with media).
MAX_FIELDS = 200
TWIML = "application/xml"


def public_url(rt: Runtime, request: Request) -> str:
    url = rt.settings.public_url.rstrip("/") + request.url.path
    return f"{url}?{request.url.query}" if request.url.query else url


async def twilio_params(request: Request, rt: Runtime) -> dict[str, str]:
    """The form parameters of a correctly signed Twilio request; 403 otherwise."""
    body = await request.body()
    try:
        # Twilio posts application/x-www-form-urlencoded, always; parsed directly, at a
        # tenth of the cost of the general multipart-capable form parser.
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                          max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "body is not form-encoded UTF-8") from None
    params = dict(pairs)
    signature = request.headers.get("X-Twilio-Signature", "")
    token = rt.settings.twilio_auth_token or ""
    # The pairs, not the dict: Twilio signs every value of a repeated key.
    if not token or not signature or not twilio_signature_valid(
            token, public_url(rt, request), pairs, signature):
        log.warning("refused a Twilio webhook with a bad or missing signature (%s)",
                    request.url.path)
        raise HTTPException(403, "invalid signature")
    return params


@router.post("/twilio/sms")
async def twilio_sms(request: Request) -> Response:
    rt = runtime_of(request)
    params = await twilio_params(request, rt)
    if not params.get("MessageSid") or "From" not in params:
        raise HTTPException(400, "MessageSid and From are required")
    result = await intake_of(request).submit(sms_batch, params)
    if result.queued_work:
        wake_worker(request)
    return Response(twiml_message(result.answer), media_type=TWIML)


@router.post("/twilio/status")
async def twilio_status(request: Request) -> Response:
    rt = runtime_of(request)
    params = await twilio_params(request, rt)
    sid, status = params.get("MessageSid"), params.get("MessageStatus")
    if not sid or not status:
        raise HTTPException(400, "MessageSid and MessageStatus are required")
    moved = await intake_of(request).submit(status_batch, (params, request.query_params.get("ref")))
    if moved and TWILIO_STATUS.get(status.lower()) in DEAD_DELIVERY_STATES:
        wake_worker(request)  # a failover message was queued, or an escalation brought forward
    return Response(status_code=204)


@router.post("/twilio/voice/status")
async def twilio_call_status(request: Request) -> Response:
    """A call's progress (initiated, ringing, answered, completed, and how it ended)."""
    rt = runtime_of(request)
    params = await twilio_params(request, rt)
    if not params.get("CallSid") or not params.get("CallStatus"):
        raise HTTPException(400, "CallSid and CallStatus are required")
    params.pop("MessageSid", None)  # a call's callback is read as a call's
    moved = await intake_of(request).submit(status_batch, (params, request.query_params.get("ref")))
    if moved and call_state(params) in DEAD_DELIVERY_STATES:
        wake_worker(request)  # a failover message was queued, or an escalation brought forward
    return Response(status_code=204)


@router.post("/twilio/voice/gather")
async def twilio_call_gather(request: Request) -> Response:
    """The key a volunteer pressed: 1 acknowledges, 9 asks for help. Answered with TwiML."""
    rt = runtime_of(request)
    params = await twilio_params(request, rt)
    if not params.get("CallSid"):
        raise HTTPException(400, "CallSid is required")
    result = await intake_of(request).submit(gather_batch,
                                             (params, request.query_params.get("ref")))
    if result.queued_work:
        wake_worker(request)
    return Response(say_twiml(result.answer, result.language), media_type=TWIML)


@router.post("/sendgrid/events")
async def sendgrid_events(request: Request) -> Response:
    rt = runtime_of(request)
    raw = await request.body()
    signature = request.headers.get("X-Twilio-Email-Event-Webhook-Signature", "")
    timestamp = request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp", "")
    key = rt.settings.sendgrid_webhook_public_key or ""
    if not key or not signature or not _fresh(timestamp, rt) or not sendgrid_signature_valid(
            key, raw, signature, timestamp):
        log.warning("refused a SendGrid event webhook with a bad, old or missing signature")
        raise HTTPException(403, "invalid signature")
    try:
        events = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, "body is not JSON") from None
    except RecursionError:  # signed, yet nested deeper than any event batch
        raise HTTPException(400, "body is nested too deeply") from None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise HTTPException(400, "body is not a JSON array of events")

    moved = await run_in_threadpool(sendgrid_batch, rt, events)
    if any(moved):
        wake_worker(request)
    return Response(status_code=204)


#: Digits of a Unix timestamp in seconds for the next few thousand years.
_TIMESTAMP_DIGITS = 12


def _fresh(timestamp: str, rt: Runtime) -> bool:
    """Reject replays: the signed timestamp must be recent (and a number of sensible size:
    a 400-digit one overflows a float)."""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= _TIMESTAMP_DIGITS):
        return False
    age = abs(time.time() - int(timestamp))
    return age <= rt.settings.sendgrid_webhook_max_age_seconds
