"""Security headers on every answer: what a browser may load, frame or leak.

The dashboard's scripts and styles are files under /static: the policy allows no
inline script at all, so text that slipped through as markup still cannot run. No
page may be framed (clickjacking an officer into "Send"), no response is sniffed into
another type, and no URL (an acknowledgement link holds a token) is sent as a Referer to
another site. ("same-origin", not "no-referrer": under "no-referrer" Chromium sends
`Origin: null` with our own form posts, and the login checks the origin.)
A response may set its own, stricter or different, policy (the report allows its
inline styles and still no script).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Pages served by the app: scripts, styles and the live board's events from here only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: The self-contained report: its inline styles and SVG, never a script.
REPORT_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


class SecurityHeaders:
    """ASGI middleware: add SECURITY_HEADERS to every HTTP answer that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
