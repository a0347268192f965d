"""`aln roster erase NAME`: one volunteer's name and contact details gone from everywhere.

What goes: the name (the row keeps a pseudonym, "erased volunteer 17", so reports still
count what they did), every contact path (ciphertext, hash and mask), their memberships,
what they texted (replies' text and sender mask, the stored webhook requests from or
about their number or address), provider error texts and skip reasons quoting them,
and the requests waiting in the spool. Their messages not yet sent are cancelled.

What stays: recipient, delivery and response rows without personal data (states,
channels, times, provider codes, reply kinds, headcounts), which is what the reports
count, and the audit trail. The audit log is append-only and its rows name volunteers
by id only (`volunteer_id`, `contact_id`, `recipient_id`), so the pseudonym is all it
points at once the name is gone. Audit rows written by older versions that quoted a
name or a masked number cannot be changed; they are counted and reported.

On SQLite the file is then rebuilt (VACUUM) and its write-ahead log emptied, so no old
page still holds the erased bytes; on PostgreSQL the touched tables are vacuumed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, or_, select, text, update
from sqlalchemy.orm import Session

from dispatcher import audit, lifecycle
from dispatcher.crypto import Unreadable, Vault
from dispatcher.db import db_now
from dispatcher.domain import DeliveryState
from dispatcher.errors import InvalidInput, NotFound
from dispatcher.models import (
    AuditEvent,
    Delivery,
    InboundMessage,
    Membership,
    Post,
    Recipient,
    Response,
    Volunteer,
)
from dispatcher.replies.spool import kept_files
from dispatcher.runtime import Runtime
from dispatcher.text import fold

log = logging.getLogger(__name__)

#: The name an erased volunteer's row keeps: their id only.
PSEUDONYM = "erased volunteer {id}"
#: What replaces an erased name or number inside a kept text.
REDACTED = "[erased]"
#: What an erased stored webhook request becomes: nothing (no key needed to read it).
ERASED_REQUEST = b""
#: Tables whose rows an erasure rewrites: vacuumed afterwards on PostgreSQL.
TOUCHED_TABLES = ("volunteers", "contacts", "memberships", "deliveries", "recipients",
                  "responses", "inbound_messages")


@dataclass
class Erasure:
    """What one erasure changed, for the officer and the audit log."""

    volunteer_id: int
    pseudonym: str
    contacts: int = 0
    memberships: int = 0
    deliveries_cancelled: int = 0
    deliveries_redacted: int = 0
    responses: int = 0
    inbound: int = 0
    spool_files: int = 0
    #: Older audit rows that quote the name or a masked number (append-only: kept).
    audit_rows_quoting: int = 0
    #: What could not be searched (encrypted under a key no longer configured).
    unsearchable: list[str] = field(default_factory=list)
    compacted: bool = False

    def counts(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)
                and not isinstance(v, bool) and k != "volunteer_id"}


def find_volunteer(session: Session, post: Post, name: str) -> Volunteer:
    """The one volunteer of the post with this name (case and accents ignored); an error
    naming the problem when there is none or several."""
    wanted = fold(name)
    if not wanted:
        raise InvalidInput("name: give the volunteer's name as in the roster")
    found = [v for v in session.scalars(select(Volunteer).where(
        Volunteer.post_id == post.id, Volunteer.kind == "clv").order_by(Volunteer.id))
             if fold(v.name) == wanted]
    if not found:
        raise NotFound(f"no volunteer named '{name}' in the roster (already erased?)")
    if len(found) > 1:
        ids = ", ".join(str(v.id) for v in found)
        raise InvalidInput(f"{len(found)} volunteers are named '{name}' (ids {ids}); "
                           "erase one with --id")
    return found[0]


def erase_volunteer(rt: Runtime, volunteer_id: int, *, actor: str = "cli",
                    reason: str = "request", compact: bool = True) -> Erasure:
    """Erase one volunteer (one transaction), then the spool, then old pages."""
    with rt.db.session() as session:
        result = erase_rows(session, rt.vault, volunteer_id, actor=actor, reason=reason)
        needles = session.info.pop("aln.erase_needles")
    result.spool_files = _erase_spool(rt.vault, rt.settings.spool_path(), needles,
                                      result.unsearchable)
    if compact:
        result.compacted = compact_database(rt.db.engine)
    return result


def erase_rows(session: Session, vault: Vault, volunteer_id: int, *, actor: str,
               reason: str) -> Erasure:
    """The database part of an erasure, in the caller's transaction."""
    vol = session.get(Volunteer, volunteer_id)
    if vol is None or vol.kind != "clv":
        raise NotFound(f"no volunteer with id {volunteer_id}")
    now = db_now(session)
    result = Erasure(vol.id, PSEUDONYM.format(id=vol.id))
    contacts = list(vol.contacts)
    values, hashes = [], set()
    for c in contacts:
        hashes.add(c.value_hash)
        try:
            value = vault.decrypt(c.value_enc)
        except Unreadable:
            result.unsearchable.append(f"contact {c.id} ({c.channel} {c.masked})")
            continue
        values.append(value)
        hashes.update(vault.lookup_hashes(value))
    needles = _needles(vol.name, values, [c.masked for c in contacts])
    scrub = _scrubber(needles)
    session.info["aln.erase_needles"] = needles
    cids = [c.id for c in contacts]

    if cids:
        result.deliveries_cancelled = lifecycle.move_rows(
            session, Delivery, DeliveryState.CANCELLED, Delivery.contact_id.in_(cids),
            only_from=[DeliveryState.PENDING], lease_until=None)
        for d in session.scalars(select(Delivery).where(Delivery.contact_id.in_(cids))):
            changed = False
            for column in ("error_message", "body", "subject", "html"):
                old = getattr(d, column)
                if old and (new := scrub(old)) != old:
                    setattr(d, column, new)
                    changed = True
            result.deliveries_redacted += changed
    for rec in session.scalars(select(Recipient).where(Recipient.volunteer_id == vol.id)):
        if rec.skipped:
            rec.skipped = json.loads(scrub(json.dumps(rec.skipped, ensure_ascii=False)))

    inbound_ids = _erase_inbound(session, vault, hashes, needles, result)
    mine = or_(Response.volunteer_id == vol.id, Response.inbound_id.in_(inbound_ids))
    result.responses = session.execute(update(Response).where(mine).values(
        text="", sender_masked=None)).rowcount or 0  # type: ignore[attr-defined]
    for resp in session.scalars(select(Response).where(Response.text != "")):
        if (new := scrub(resp.text)) != resp.text:  # someone else's report naming them
            resp.text = new
            result.responses += 1

    for c in contacts:
        c.value_enc, c.value_hash, c.masked = vault.encrypt(""), f"erased:{c.id}", "(erased)"
        c.opted_out, c.opted_out_at, c.dead_reason, c.dead_at = True, now, "erased", now
    result.contacts = len(contacts)
    result.memberships = session.execute(delete(Membership).where(
        Membership.volunteer_id == vol.id)).rowcount or 0  # type: ignore[attr-defined]
    vol.name = result.pseudonym
    session.flush()
    details: list[Any] = list(session.scalars(select(AuditEvent.details)))
    quoted = (json.dumps(d, ensure_ascii=False) for d in details)
    result.audit_rows_quoting = sum(1 for text_ in quoted if scrub(text_) != text_)
    audit.record(session, actor, "volunteer.erased", volunteer_id=vol.id,
                 pseudonym=result.pseudonym, reason=reason, **result.counts())
    log.info("erased volunteer %s (%s)", vol.id, reason)
    return result


def _erase_inbound(session: Session, vault: Vault, hashes: set[str], needles: list[str],
                   result: Erasure) -> list[int]:
    """Stored requests from or about the volunteer (by sender hash) are emptied; another
    sender's request that quotes them keeps everything else. The ids of the emptied."""
    scrub = _scrubber(needles)
    ids: list[int] = []
    quoting: dict[int, bytes] = {}
    rows = session.execute(select(InboundMessage.id, InboundMessage.raw_enc,
                                  InboundMessage.sender_hash))
    for iid, raw, digest in rows:
        if raw == ERASED_REQUEST:
            continue
        if digest is not None and digest in hashes:
            ids.append(iid)
            continue
        try:
            plain = vault.decrypt(raw)
        except Unreadable:
            result.unsearchable.append(f"stored request {iid}")
            continue
        if (clean := scrub(plain)) != plain:
            quoting[iid] = vault.encrypt(clean)
    for start in range(0, len(ids), 500):
        session.execute(update(InboundMessage).where(
            InboundMessage.id.in_(ids[start:start + 500])).values(
            raw_enc=ERASED_REQUEST, sender_hash=None))
    for iid, blob in quoting.items():
        session.execute(update(InboundMessage).where(InboundMessage.id == iid)
                        .values(raw_enc=blob))
    result.inbound = len(ids) + len(quoting)
    return ids


def _needles(name: str, values: Iterable[str], masks: Iterable[str]) -> list[str]:
    """Every spelling of the volunteer to find in texts: name, number (with and without
    its +), address and masks; longest first so "+52..." wins over "52...". """
    out = {name.strip(), *masks}
    for value in values:
        out.add(value)
        if value.startswith("+"):
            out.add(value[1:])
    return sorted((n for n in out if len(n) >= 4), key=len, reverse=True)


def _scrubber(needles: list[str]) -> Callable[[str], str]:
    if not needles:
        return lambda s: s
    pattern = re.compile("|".join(map(re.escape, needles)), re.IGNORECASE)
    return lambda s: pattern.sub(REDACTED, s)


def _erase_spool(vault: Vault, directory: Path, needles: list[str],
                 unsearchable: list[str]) -> int:
    """Delete waiting requests from or about the volunteer: their reply no longer has
    anyone to be attached to."""
    if not needles:
        return 0
    found = re.compile("|".join(map(re.escape, needles)), re.IGNORECASE)
    removed = 0
    for path in kept_files(directory):
        try:
            plain = vault.decrypt(path.read_bytes())
        except FileNotFoundError:
            continue
        except Unreadable:
            unsearchable.append(f"spooled request {path.name}")
            continue
        if found.search(plain):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def compact_database(engine: Engine) -> bool:
    """Leave no old page with erased bytes: SQLite rebuilds the file and empties its
    write-ahead log; PostgreSQL vacuums the touched tables. False when SQLite could not
    empty the log (another process is reading; run `aln retention apply` again later)."""
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("PRAGMA secure_delete=ON")
            cur.execute("VACUUM")
            busy, *_ = cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            cur.close()
            return not busy
        finally:
            raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for name in TOUCHED_TABLES:
            conn.execute(text(f"VACUUM {name}"))
    return True
