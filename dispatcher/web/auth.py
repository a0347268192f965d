"""Officers: roles, API tokens (stored hashed), dashboard sessions, CSRF.

Roles are ordered: a viewer reads, an officer also composes, sends and cancels, an
admin also manages the roster and officers. The API takes `Authorization: Bearer`;
the dashboard a signed, HttpOnly, SameSite=Strict session cookie, and every form
POST carries the session's CSRF token. Login throttling is in `throttle`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.crypto import hash_token
from dispatcher.db import db_now
from dispatcher.domain import Role
from dispatcher.errors import InvalidInput, NotFound
from dispatcher.models import ApiToken, Officer
from dispatcher.runtime import Runtime

ROLE_RANK = {Role.VIEWER: 0, Role.OFFICER: 1, Role.ADMIN: 2}
SESSION_COOKIE = "aln_session"
#: The login form's own CSRF token (double submit: this cookie and a hidden field).
LOGIN_CSRF_COOKIE = "aln_login_csrf"
#: Methods that change nothing: the only ones the API serves to a session cookie.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: A dashboard session lasts a long shift, no more.
SESSION_MAX_AGE_SECONDS = 12 * 3600
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class Caller:
    officer_id: int
    name: str
    role: Role
    csrf: str = ""
    #: Inbox items waiting, for the dashboard's navigation (set by the page handlers).
    inbox_waiting: int | None = None

    def at_least(self, role: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


# --- passwords and tokens ----------------------------------------------------------------


def _derive(password: str, salt: bytes) -> bytes:
    """The one place a password is hashed (scrypt: deliberately slow)."""
    return hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    return f"scrypt${salt.hex()}${_derive(password, salt).hex()}"


def check_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, salt, digest = stored.split("$")
    return hmac.compare_digest(_derive(password, bytes.fromhex(salt)).hex(), digest)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def login_officer(session: Session, name: str, secret: str) -> Officer | None:
    """The officer `name` if `secret` is their password or one of their API tokens.

    Exactly one password hash is computed whatever the name: an unknown name, or an
    officer without a password, is checked against a dummy hash, so the time a login
    takes does not tell which officer names exist.
    """
    officer = session.scalar(select(Officer).where(Officer.name == name))
    stored = officer.password_hash if officer is not None else None
    password_ok = check_password(secret, stored or _dummy_hash()) and stored is not None
    # Looked up whatever the name too, so that a known name costs no extra query.
    by_token = caller_from_token(session, secret) if secret else None
    if officer is None or officer.disabled:
        return None
    if password_ok:
        return officer
    return officer if by_token is not None and by_token.officer_id == officer.id else None


def add_officer(session: Session, name: str, role: str, actor: str = "cli") -> str:
    """Create an officer; returns their API token, which is shown once and stored hashed."""
    try:
        parsed = Role(role)
    except ValueError:
        raise InvalidInput(f"role '{role}' is not admin, officer or viewer") from None
    if session.scalar(select(Officer).where(Officer.name == name)) is not None:
        raise InvalidInput(f"an officer named '{name}' already exists")
    officer = Officer(name=name, role=parsed)
    session.add(officer)
    session.flush()
    token = new_token(session, officer)
    audit.record(session, actor, "officer.added", officer=name, role=parsed.value)
    return token


def new_token(session: Session, officer: Officer) -> str:
    token = "aln_" + secrets.token_urlsafe(32)
    session.add(ApiToken(officer_id=officer.id, token_hash=hash_token(token)))
    return token


def get_officer(session: Session, name: str) -> Officer:
    officer = session.scalar(select(Officer).where(Officer.name == name))
    if officer is None:
        raise NotFound(f"no officer named '{name}'")
    return officer


def caller_from_token(session: Session, token: str) -> Caller | None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token),
                                                ApiToken.revoked.is_(False)))
    if row is None or row.officer.disabled:
        return None
    row.last_used_at = db_now(session)
    return Caller(row.officer.id, row.officer.name, Role(row.officer.role))


# --- sessions and request authentication -----------------------------------------------------


def _serializer(rt: Runtime) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(rt.vault.token_key, salt="aln-dashboard-session")


def _password_mark(rt: Runtime, password_hash: str | None) -> str:
    """A keyed fingerprint of the officer's password hash: a new password (`aln officer
    passwd`) makes a new one, so sessions begun under the old password end."""
    return hmac.new(rt.vault.token_key, (password_hash or "").encode(),
                    hashlib.sha256).hexdigest()[:16]


def session_cookie(rt: Runtime, officer: Officer) -> str:
    return _serializer(rt).dumps({"o": officer.id, "c": secrets.token_urlsafe(16),
                                  "e": officer.session_epoch,
                                  "p": _password_mark(rt, officer.password_hash)})


def caller_from_cookie(rt: Runtime, session: Session, cookie: str) -> Caller | None:
    """The session's officer, unless the session was ended server-side: by logging out
    (the epoch moved on), a new password, or the officer being revoked."""
    try:
        data = _serializer(rt).loads(cookie, max_age=SESSION_MAX_AGE_SECONDS)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("o"), int):
        return None
    officer = session.get(Officer, data["o"])
    if officer is None or officer.disabled or data.get("e") != officer.session_epoch:
        return None
    if not hmac.compare_digest(str(data.get("p", "")),
                               _password_mark(rt, officer.password_hash)):
        return None
    return Caller(officer.id, officer.name, Role(officer.role), csrf=str(data.get("c", "")))


def end_sessions(session: Session, officer_id: int) -> None:
    """End every dashboard session of the officer (logout)."""
    session.execute(update(Officer).where(Officer.id == officer_id)
                    .values(session_epoch=Officer.session_epoch + 1))


def authenticate(request: Request) -> Caller | None:
    """The officer behind a request (bearer token or session cookie), or None."""
    rt: Runtime = request.app.state.rt
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        with rt.db.session() as session:  # stamps the token's last use
            return caller_from_token(session, header[7:].strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        # A dashboard session is only read, beside the writers (`Database.reading`): on
        # SQLite every page, board and look of an officer's screen had taken the writers'
        # lock to say who is asking, and the replies' intake waited behind it.
        with rt.db.reading() as session:
            return caller_from_cookie(rt, session, cookie)
    return None


def api_caller(role: Role) -> Callable[[Request], Caller]:
    """FastAPI dependency: 401 for anonymous callers, 403 below `role`.

    The API changes things for bearer tokens only. A browser sends the dashboard's
    session cookie with any request a page on the same site makes, and the API has no
    form token to tell the officer's own requests apart: with a cookie, it only reads
    (the dashboard links to the report and the audit CSV).
    """

    def dependency(request: Request) -> Caller:
        caller = authenticate(request)
        if caller is None:
            raise HTTPException(401, "authentication required",
                                headers={"WWW-Authenticate": "Bearer"})
        if caller.csrf and request.method not in SAFE_METHODS:
            raise HTTPException(403, "the API changes things only for a bearer token "
                                     "(Authorization: Bearer ...), not a dashboard session")
        if not caller.at_least(role):
            raise HTTPException(403, f"this needs the {role.value} role")
        return caller

    return dependency


def check_csrf(caller: Caller, submitted: str | None) -> None:
    """Dashboard form POSTs carry the session's token; API calls use bearer tokens."""
    if not caller.csrf:
        return  # a bearer-token client: no cookie, so no cross-site request to forge
    if not submitted or not hmac.compare_digest(submitted, caller.csrf):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page")


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def same_origin(request: Request, public_url: str) -> bool:
    """False when a browser says the request comes from another site's page: its Origin
    is neither ours by `ALN_PUBLIC_URL` nor the host it addressed. No Origin (a
    script, a test client) is not a browser's cross-site form."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    public = urlsplit(public_url)
    return origin in (own, f"{public.scheme}://{public.netloc}")


def check_login_csrf(request: Request, submitted: str | None, public_url: str) -> None:
    """Login CSRF: the login form carries the token of its own cookie, from our origin;
    else a page elsewhere could log the officer's browser into an attacker's account."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not cookie or not submitted or not hmac.compare_digest(submitted, cookie):
        raise HTTPException(403, "missing or wrong login form token; reload the login page")
    if not same_origin(request, public_url):
        raise HTTPException(403, "a login from another site's page is refused")

