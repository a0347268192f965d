"""The provider simulator: Twilio's Messages and Calls APIs and SendGrid's mail/send, on
loopback.

The real SDKs talk to it. After accepting a message it sends signed status
callbacks (Twilio) and signed events (SendGrid) to the engine's public URL, plays
volunteers replying by SMS (scripted per number) and answering calls (a behaviour
per number: press 1, press 9, silent, no answer, busy, voicemail, failed; see
`CALL_BEHAVIOURS`), and injects faults: latency,
5xx, 429 bursts, outages, invalid or opted-out numbers, landlines, bounces. It
records every request for assertions. Phone numbers stay out of its logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from xml.etree import ElementTree

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from channels.encoding import sms_segments
from channels.masking import mask_contact
from channels.webhooks import generate_sendgrid_keypair, sendgrid_sign, twilio_sign

log = logging.getLogger(__name__)

#: Pause between accepting a message and its first status callback.
CALLBACK_DELAY_SECONDS = 0.05
#: Attempts to deliver one callback or reply to the engine before recording a failure.
CALLBACK_ATTEMPTS = 5
#: WhatsApp's customer-service window: free text is refused (63016) outside it.
WHATSAPP_SESSION_SECONDS = 24 * 3600
#: The reply code is taken from the last 4-6 digit number of the message.
DEFAULT_CODE_PATTERN = r"(\d{4,6})\D*$"
#: How a simulated volunteer takes a call: a person who presses 1 or 9 or hangs up
#: without a key; or a call that rings out, finds the line busy, reaches a voicemail
#: (answering-machine detection says `machine_end_beep`), or fails.
CALL_BEHAVIOURS = ("press1", "press9", "silent", "no-answer", "busy", "voicemail", "failed")
#: What a number nobody gave a behaviour does with a call.
DEFAULT_CALL_BEHAVIOUR = "silent"


@dataclass
class Faults:
    latency_min: float = 0.0
    latency_max: float = 0.0
    error_rate: float = 0.0
    burst_429: int = 0
    retry_after: float = 1.0
    outage_until: float = 0.0
    invalid_numbers: set[str] = field(default_factory=set)  # 21211 on create
    opted_out_numbers: set[str] = field(default_factory=set)  # 21610 on create
    landline_numbers: set[str] = field(default_factory=set)  # 21614 on create
    undelivered_numbers: set[str] = field(default_factory=set)  # 30003 in callbacks
    failed_numbers: set[str] = field(default_factory=set)  # 30006 in callbacks
    bounce_emails: set[str] = field(default_factory=set)
    callbacks: bool = True

    def update(self, data: dict[str, Any]) -> None:
        for key, value in data.items():
            if key == "outage_seconds":
                self.outage_until = time.monotonic() + float(value)
            elif key == "latency_ms":
                self.latency_min = self.latency_max = float(value) / 1000
            elif isinstance(getattr(self, key, None), set):
                setattr(self, key, set(value))
            elif hasattr(self, key):
                setattr(self, key, type(getattr(self, key))(value))
            else:
                raise ValueError(f"unknown fault {key!r}")


@dataclass
class Script:
    reply: str | None
    delay: float = 0.0
    once: bool = True
    used: bool = False


@dataclass
class SimState:
    account_sid: str
    auth_token: str
    public_url: str
    from_number: str = "+15005550006"
    faults: Faults = field(default_factory=Faults)
    scripts: dict[str, Script] = field(default_factory=dict)
    call_behaviours: dict[str, str] = field(default_factory=dict)
    #: Every call placed: sid, to, behaviour, the TwiML it ran, the statuses it reported
    #: and what the engine answered to its key press.
    calls: list[dict[str, Any]] = field(default_factory=list)
    code_pattern: str = DEFAULT_CODE_PATTERN
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: When each WhatsApp number last wrote to us (monotonic), opening its session.
    whatsapp_sessions: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    private_key: ec.EllipticCurvePrivateKey | None = None
    public_key: str = ""
    client: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        self.private_key, self.public_key = generate_sendgrid_keypair()


def create_simulator(account_sid: str = "AC" + "1" * 32, auth_token: str = "simulator-token",
                     public_url: str = "http://127.0.0.1:8000") -> Starlette:
    state = SimState(account_sid=account_sid, auth_token=auth_token, public_url=public_url)

    def spawn(coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)

    async def faulted(kind: str) -> Response | None:
        f = state.faults
        if f.latency_max > 0:
            await asyncio.sleep(random.uniform(f.latency_min, f.latency_max))
        if time.monotonic() < f.outage_until:
            return _error(kind, 503, 20500 if kind == "twilio" else None, "service unavailable")
        if f.burst_429 > 0:
            f.burst_429 -= 1
            return _error(kind, 429, 20429 if kind == "twilio" else None, "too many requests",
                          {"Retry-After": f"{f.retry_after:g}"})
        if f.error_rate and random.random() < f.error_rate:
            return _error(kind, 500, 20500 if kind == "twilio" else None, "internal error")
        return None

    async def twilio_create(request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        auth_ok = _basic_ok(request, state.account_sid, state.auth_token)
        state.requests.append({"method": "POST", "path": request.url.path, "form": form,
                               "auth_ok": auth_ok, "at": time.time()})
        if not auth_ok:
            return _error("twilio", 401, 20003, "Authenticate")
        failure = await faulted("twilio")
        if failure is not None:
            return failure
        to, body = form.get("To", ""), form.get("Body", "")
        number, whatsapp = _bare(to)
        if whatsapp:
            refused = _whatsapp_refusal(state, form, number)
            if refused is not None:
                return refused
            if form.get("ContentSid"):
                body = _template_text(form)
        f = state.faults
        for numbers, code, text in ((f.invalid_numbers, 21211, "The 'To' number is not a "
                                     "valid phone number."),
                                    (f.opted_out_numbers, 21610, "Attempt to send to "
                                     "unsubscribed recipient"),
                                    (f.landline_numbers, 21614, "'To' number is not a valid "
                                     "mobile number")):
            if number in numbers:
                return _error("twilio", 400, code, text)
        if not to or not body:
            return _error("twilio", 400, 21602, "Message body is required.")
        sid = "SM" + secrets.token_hex(16)
        status = "accepted" if form.get("MessagingServiceSid") else "queued"
        if state.faults.callbacks and form.get("StatusCallback"):
            spawn(_status_sequence(state, form["StatusCallback"], sid, to))
        script = state.scripts.get(to)
        if script is not None and script.reply is not None and not (script.once and
                                                                     script.used):
            script.used = True
            match = re.search(state.code_pattern, body)
            reply = script.reply.replace("{code}", match.group(1) if match else "")
            spawn(_reply_later(state, to, reply, script.delay))
        return JSONResponse({
            "sid": sid, "status": status, "to": to, "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"), "body": body,
            "num_segments": "1" if whatsapp else str(sms_segments(body).segments),
            "error_code": None,
            "error_message": None, "account_sid": state.account_sid,
            "date_created": formatdate(usegmt=True), "direction": "outbound-api",
            "uri": f"/2010-04-01/Accounts/{state.account_sid}/Messages/{sid}.json",
        }, status_code=201)

    async def twilio_call(request: Request) -> Response:
        pairs = [(k, v) for k, v in (await request.form()).multi_items() if isinstance(v, str)]
        form = dict(pairs)
        auth_ok = _basic_ok(request, state.account_sid, state.auth_token)
        state.requests.append({"method": "POST", "path": request.url.path, "form": form,
                               "form_multi": pairs, "auth_ok": auth_ok, "at": time.time()})
        if not auth_ok:
            return _error("twilio", 401, 20003, "Authenticate")
        failure = await faulted("twilio")
        if failure is not None:
            return failure
        to = form.get("To", "")
        if to in state.faults.invalid_numbers:
            return _error("twilio", 400, 21211, "The 'To' number is not a valid phone number.")
        if not to or not form.get("From"):
            return _error("twilio", 400, 21201, "'To' and 'From' are required.")
        if not (form.get("Twiml") or form.get("Url")):
            return _error("twilio", 400, 21205, "Either 'Url' or 'Twiml' is required.")
        sid = "CA" + secrets.token_hex(16)
        call: dict[str, Any] = {"sid": sid, "to": to, "from": form["From"],
                "behaviour": state.call_behaviours.get(to, DEFAULT_CALL_BEHAVIOUR),
                "twiml": form.get("Twiml"), "statuses": [], "gather": None}
        state.calls.append(call)
        spawn(_call_sequence(state, call, form, [v for k, v in pairs
                                                 if k == "StatusCallbackEvent"]))
        return JSONResponse({
            "sid": sid, "status": "queued", "to": to, "from": form["From"],
            "account_sid": state.account_sid, "direction": "outbound-api",
            "answered_by": None, "duration": None, "price": None,
            "date_created": formatdate(usegmt=True), "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{state.account_sid}/Calls/{sid}.json",
        }, status_code=201)

    async def control_calls(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(state.calls)
        data = await request.json()
        for number, behaviour in data.items():
            if behaviour not in CALL_BEHAVIOURS:
                return JSONResponse({"error": f"unknown call behaviour {behaviour!r}"},
                                    status_code=400)
            state.call_behaviours[number] = behaviour
        return JSONResponse({"ok": True})

    async def sendgrid_send(request: Request) -> Response:
        raw = await request.body()
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        auth_ok = request.headers.get("authorization", "").startswith("Bearer ")
        state.requests.append({"method": "POST", "path": request.url.path, "json": data,
                               "auth_ok": auth_ok, "at": time.time()})
        if not auth_ok:
            return _error("sendgrid", 401, None, "authorization required")
        failure = await faulted("sendgrid")
        if failure is not None:
            return failure
        if not isinstance(data, dict) or not data.get("personalizations"):
            return _error("sendgrid", 400, None, "personalizations are required")
        message_id = secrets.token_urlsafe(16)
        if state.faults.callbacks:
            spawn(_sendgrid_events(state, data, message_id))
        return Response(status_code=202, headers={"X-Message-Id": message_id})

    async def control_requests(_request: Request) -> Response:
        return JSONResponse(state.requests)

    async def control_reset(_request: Request) -> Response:
        state.requests.clear()
        state.scripts.clear()
        state.call_behaviours.clear()
        state.calls.clear()
        state.failures.clear()
        state.faults = Faults()
        return JSONResponse({"ok": True})

    async def control_faults(request: Request) -> Response:
        try:
            state.faults.update(await request.json())
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True})

    async def control_scripts(request: Request) -> Response:
        data = await request.json()
        for number, spec in data.items():
            state.scripts[number] = Script(reply=spec.get("reply"),
                                           delay=float(spec.get("delay", 0)),
                                           once=bool(spec.get("once", True)))
        return JSONResponse({"ok": True})

    async def control_inbound(request: Request) -> Response:
        data = await request.json()
        await _send_reply(state, data["from"], data["body"])
        return JSONResponse({"ok": True})

    async def control_public_url(request: Request) -> Response:
        state.public_url = (await request.json())["public_url"]
        return JSONResponse({"ok": True})

    async def control_keys(_request: Request) -> Response:
        return JSONResponse({"sendgrid_public_key": state.public_key,
                             "account_sid": state.account_sid, "auth_token": state.auth_token})

    async def control_failures(_request: Request) -> Response:
        return JSONResponse(state.failures)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state.client = httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=50))
        yield
        for task in list(state.tasks):
            task.cancel()
        await state.client.aclose()

    routes = [
        Route("/2010-04-01/Accounts/{sid}/Messages.json", twilio_create, methods=["POST"]),
        Route("/2010-04-01/Accounts/{sid}/Calls.json", twilio_call, methods=["POST"]),
        Route("/v3/mail/send", sendgrid_send, methods=["POST"]),
        Route("/_sim/calls", control_calls, methods=["GET", "POST"]),
        Route("/_sim/requests", control_requests, methods=["GET"]),
        Route("/_sim/reset", control_reset, methods=["POST"]),
        Route("/_sim/faults", control_faults, methods=["POST"]),
        Route("/_sim/scripts", control_scripts, methods=["POST"]),
        Route("/_sim/inbound", control_inbound, methods=["POST"]),
        Route("/_sim/public_url", control_public_url, methods=["POST"]),
        Route("/_sim/keys", control_keys, methods=["GET"]),
        Route("/_sim/failures", control_failures, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sim = state
    return app


def _basic_ok(request: Request, user: str, password: str) -> bool:
    import base64

    header = request.headers.get("authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        got = base64.b64decode(header[6:]).decode()
    except ValueError:
        return False
    return got == f"{user}:{password}"


def _error(kind: str, status: int, code: int | None, message: str,
           headers: dict[str, str] | None = None) -> Response:
    if kind == "twilio":
        body: dict[str, Any] = {"code": code, "message": message, "status": status,
                                "more_info": f"https://www.twilio.com/docs/errors/{code}"}
    else:
        body = {"errors": [{"message": message, "field": None}]}
    return JSONResponse(body, status_code=status, headers=headers)


async def _post(state: SimState, url: str, what: str, **kwargs: Any) -> bool:
    assert state.client is not None
    for attempt in range(CALLBACK_ATTEMPTS):
        try:
            resp = await state.client.post(url, **kwargs)
            if resp.status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2 * (attempt + 1))
    state.failures.append(what)
    log.info("simulator could not deliver %s", what)
    return False


WHATSAPP_PREFIX = "whatsapp:"


def _bare(address: str) -> tuple[str, bool]:
    """The number of a `whatsapp:+E164` (or plain) address, and whether it is WhatsApp."""
    if address.startswith(WHATSAPP_PREFIX):
        return address[len(WHATSAPP_PREFIX):], True
    return address, False


def _whatsapp_refusal(state: SimState, form: dict[str, str], number: str) -> Response | None:
    """What Twilio refuses on WhatsApp: a plain From, a template without valid variables,
    free text outside the 24-hour session (63016)."""
    if not form.get("From", "").startswith(WHATSAPP_PREFIX):
        return _error("twilio", 400, 21910, "Invalid From and To pair: both must be "
                      "WhatsApp addresses")
    if form.get("ContentSid"):
        if not re.fullmatch(r"HX[0-9a-fA-F]{32}", form["ContentSid"]):
            return _error("twilio", 400, 21655, "The ContentSid is invalid.")
        try:
            variables = json.loads(form.get("ContentVariables") or "{}")
        except ValueError:
            variables = None
        if not isinstance(variables, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in variables.items()):
            return _error("twilio", 400, 21656, "The ContentVariables parameter is invalid.")
        return None
    opened = state.whatsapp_sessions.get(number)
    if opened is None or time.monotonic() - opened > WHATSAPP_SESSION_SECONDS:
        return _error("twilio", 400, 63016, "Failed to send freeform message because you "
                      "are outside the allowed window. Please use a Template.")
    return None


def _template_text(form: dict[str, str]) -> str:
    """What the simulator pretends a template said: its variables, in order."""
    variables = json.loads(form.get("ContentVariables") or "{}")
    return " ".join(str(variables[k]) for k in sorted(variables, key=lambda k: (len(k), k)))


async def _status_sequence(state: SimState, url: str, sid: str, to: str) -> None:
    await asyncio.sleep(CALLBACK_DELAY_SECONDS)
    f = state.faults
    number, whatsapp = _bare(to)
    steps: list[tuple[str, str | None]]
    if number in f.failed_numbers:
        steps = [("failed", "30006")]
    elif number in f.undelivered_numbers:
        steps = [("sent", None), ("undelivered", "30003")]
    else:
        steps = [("sent", None), ("delivered", None)]
    for status, code in steps:
        params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status,
                  "SmsStatus": status, "AccountSid": state.account_sid, "To": to,
                  "From": (WHATSAPP_PREFIX if whatsapp else "") + state.from_number,
                  "ApiVersion": "2010-04-01"}
        if code:
            params["ErrorCode"] = code
        signature = twilio_sign(state.auth_token, url, params)
        await _post(state, url, f"status {status} for {mask_contact(to)}", data=params,
                    headers={"X-Twilio-Signature": signature})


async def _call_sequence(state: SimState, call: dict[str, Any], form: dict[str, str],
                         events: list[str]) -> None:
    """Play one call: its progress callbacks, the volunteer's key, how it ended."""
    await asyncio.sleep(CALLBACK_DELAY_SECONDS)
    behaviour = call["behaviour"]
    callback = form.get("StatusCallback")
    base = {"CallSid": call["sid"], "AccountSid": state.account_sid, "From": call["from"],
            "To": call["to"], "Direction": "outbound-api", "ApiVersion": "2010-04-01"}
    detects = bool(form.get("MachineDetection"))
    answered_by = "machine_end_beep" if behaviour == "voicemail" else "human"
    sequence = 0

    async def report(event: str, status: str, **extra: str) -> None:
        nonlocal sequence
        call["statuses"].append(status)
        # Twilio always reports the end of a call; the other events only when asked.
        if not callback or (event != "completed" and event not in events):
            return
        params = {**base, "CallStatus": status, "CallbackSource": "call-progress-events",
                  "SequenceNumber": str(sequence), **extra}
        sequence += 1
        await _post(state, callback, f"call {status} for {mask_contact(call['to'])}",
                    data=params, headers={"X-Twilio-Signature": twilio_sign(
                        state.auth_token, callback, params)})

    await report("initiated", "initiated")
    if behaviour == "failed":
        await report("completed", "failed", ErrorCode="32009")
        return
    await report("ringing", "ringing")
    if behaviour in ("no-answer", "busy"):
        await report("completed", behaviour, CallDuration="0")
        return
    who = {"AnsweredBy": answered_by} if detects else {}
    await report("answered", "in-progress", **who)
    twiml = call["twiml"] or await _fetch_twiml(state, form["Url"], {**base,
                                                                    "CallStatus": "in-progress"})
    call["twiml"] = twiml
    digit = {"press1": "1", "press9": "9"}.get(behaviour)
    action = _gather_action(twiml or "")
    if digit and action:
        params = {**base, "CallStatus": "in-progress", "Digits": digit, "FinishedOnKey": "",
                  **who}
        assert state.client is not None
        try:
            resp = await state.client.post(action, data=params, headers={
                "X-Twilio-Signature": twilio_sign(state.auth_token, action, params)})
            call["gather"] = {"digit": digit, "status": resp.status_code, "twiml": resp.text}
        except httpx.HTTPError as exc:
            call["gather"] = {"digit": digit, "status": None, "twiml": str(exc)}
            state.failures.append(f"key press for {mask_contact(call['to'])}")
    await report("completed", "completed", CallDuration="42", **who)


async def _fetch_twiml(state: SimState, url: str, params: dict[str, str]) -> str | None:
    """TwiML served by the engine, fetched as Twilio does (a signed POST)."""
    assert state.client is not None
    try:
        resp = await state.client.post(url, data=params, headers={
            "X-Twilio-Signature": twilio_sign(state.auth_token, url, params)})
    except httpx.HTTPError:
        return None
    return resp.text if resp.status_code == 200 else None


def _gather_action(twiml: str) -> str | None:
    """The `action` of the call's `<Gather>`, if it has one."""
    try:
        root = ElementTree.fromstring(twiml)
    except ElementTree.ParseError:
        return None
    gather = root.find("Gather")
    return gather.get("action") if gather is not None else None


async def _sendgrid_events(state: SimState, data: dict[str, Any], message_id: str) -> None:
    await asyncio.sleep(CALLBACK_DELAY_SECONDS)
    events = []
    now = int(time.time())
    for n, p in enumerate(data.get("personalizations", [])):
        for to in p.get("to", []):
            email = to.get("email", "")
            base = {"email": email, "timestamp": now, "sg_message_id": f"{message_id}.{n}",
                    "smtp-id": f"<{message_id}@sim>", **(p.get("custom_args") or {})}
            events.append({**base, "event": "processed", "sg_event_id": secrets.token_hex(11)})
            if email in state.faults.bounce_emails:
                events.append({**base, "event": "bounce", "sg_event_id": secrets.token_hex(11),
                               "type": "bounce", "status": "5.1.1",
                               "reason": "550 5.1.1 mailbox does not exist"})
            else:
                events.append({**base, "event": "delivered",
                               "sg_event_id": secrets.token_hex(11)})
    raw = json.dumps(events).encode()
    timestamp = str(int(time.time()))
    assert state.private_key is not None
    headers = {"Content-Type": "application/json",
               "X-Twilio-Email-Event-Webhook-Signature": sendgrid_sign(state.private_key, raw,
                                                                       timestamp),
               "X-Twilio-Email-Event-Webhook-Timestamp": timestamp}
    await _post(state, state.public_url.rstrip("/") + "/webhooks/sendgrid/events",
                f"{len(events)} SendGrid events", content=raw, headers=headers)


async def _reply_later(state: SimState, number: str, body: str, delay: float) -> None:
    await asyncio.sleep(delay)
    await _send_reply(state, number, body)


async def _send_reply(state: SimState, number: str, body: str) -> None:
    url = state.public_url.rstrip("/") + "/webhooks/twilio/sms"
    sid = "SM" + secrets.token_hex(16)
    bare, whatsapp = _bare(number)
    params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": state.account_sid,
              "From": number, "To": state.from_number, "Body": body, "NumMedia": "0",
              "NumSegments": str(sms_segments(body).segments), "ApiVersion": "2010-04-01"}
    if whatsapp:
        params.update(To=WHATSAPP_PREFIX + state.from_number, WaId=bare.lstrip("+"),
                      ProfileName="Volunteer", NumSegments="1")
        state.whatsapp_sessions[bare] = time.monotonic()
    signature = twilio_sign(state.auth_token, url, params)
    await _post(state, url, f"reply from {mask_contact(number)}", data=params,
                headers={"X-Twilio-Signature": signature})
