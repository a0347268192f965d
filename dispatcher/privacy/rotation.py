"""`aln keys rotate`: everything encrypted or keyed-hashed, rewritten under the current key.

What is rewritten: each contact's ciphertext and look-up hash, each stored webhook
request's ciphertext and sender hash, and each request waiting in the spool directory.

No row records which key wrote it. A row is done when the current key opens it
(AES-GCM's tag rejects any other key at once) and its hash is the current key's; so a
rotation killed at any line is resumed by running it again: the batches it committed
are found done and skipped, the one in flight was rolled back and is redone. Each
batch is its own transaction, so a long rotation never holds the write lock for long.

While it runs, readers need both keys (`ALN_PREVIOUS_SECRET_KEYS`): ciphertexts open
with whichever key wrote them, and inbound numbers are matched by their hash under
every key (`Vault.lookup_hashes`), so a reply from a volunteer whose row is not yet
rewritten still acknowledges. A row written with neither key is named, never skipped
silently, and the command exits non-zero.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.crypto import UNREADABLE_HINT, Unreadable, Vault
from dispatcher.models import Contact, InboundMessage, table
from dispatcher.replies.spool import SUFFIX, kept_files
from dispatcher.runtime import Runtime

log = logging.getLogger(__name__)

#: Rows rewritten per transaction.
BATCH_SIZE = 500

_contacts, _inbound = table(Contact), table(InboundMessage)


@dataclass
class Tally:
    """One kind of stored secret: how many were rewritten, already current, unreadable."""

    rewritten: int = 0
    current: int = 0
    unreadable: list[str] = field(default_factory=list)


@dataclass
class RotationReport:
    contacts: Tally = field(default_factory=Tally)
    inbound: Tally = field(default_factory=Tally)
    spool: Tally = field(default_factory=Tally)

    @property
    def unreadable(self) -> list[str]:
        return [*self.contacts.unreadable, *self.inbound.unreadable, *self.spool.unreadable]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Called after each committed batch with the kind ("contacts", "inbound", "spool") and
#: how many of that kind have been looked at so far: progress for the CLI.
Progress = Callable[[str, int], None]


def rotate(rt: Runtime, *, batch_size: int = BATCH_SIZE, check_only: bool = False,
           progress: Progress | None = None, actor: str = "cli") -> RotationReport:
    """Rewrite every stored secret under the current key (or, with `check_only`, count
    what would be); audited at the start and at the end."""
    report = RotationReport()
    if not check_only:
        with rt.db.session() as session:
            audit.record(session, actor, "keys.rotation_started",
                         previous_keys=len(rt.vault.previous))
    _rotate_rows(rt, _contacts, report.contacts, _contact_row, batch_size, check_only,
                 progress)
    _rotate_rows(rt, _inbound, report.inbound, _inbound_row, batch_size, check_only, progress)
    _rotate_spool(rt.vault, rt.settings.spool_path(), report.spool, check_only, progress)
    if not check_only:
        with rt.db.session() as session:
            audit.record(session, actor, "keys.rotated",
                         contacts=report.contacts.rewritten, inbound=report.inbound.rewritten,
                         spool=report.spool.rewritten, unreadable=len(report.unreadable))
        log.info("key rotation: %d contacts, %d stored requests, %d spooled requests "
                 "rewritten; %d unreadable", report.contacts.rewritten,
                 report.inbound.rewritten, report.spool.rewritten, len(report.unreadable))
    return report


# --- rows ----------------------------------------------------------------------------------

#: What a table's row becomes under the current key: None when it already is, the new
#: values otherwise; `Unreadable` (with the row named) when no key opens it.
Rewrite = Callable[[Vault, Any], "dict[str, Any] | None"]


def _contact_row(vault: Vault, row: Any) -> dict[str, Any] | None:
    value = _open(vault, row.value_enc, f"contact {row.id} ({row.channel} {row.masked}, "
                                        f"volunteer {row.volunteer_id})")
    digest = vault.lookup_hash(value)
    if vault.decrypt_current(row.value_enc) is not None and row.value_hash == digest:
        return None
    return {"value_enc": vault.current.encrypt(value), "value_hash": digest}


def _inbound_row(vault: Vault, row: Any) -> dict[str, Any] | None:
    if not row.raw_enc:
        return None  # erased (`dispatcher.privacy.erasure.ERASED_REQUEST`): nothing to read
    text = _open(vault, row.raw_enc, f"stored {row.source} request {row.id} "
                                     f"(received {row.received_at:%Y-%m-%d %H:%M})")
    digest = row.sender_hash
    if digest is not None:
        digest = _rehash(vault, digest, _strings(json.loads(text)))
    if vault.decrypt_current(row.raw_enc) is not None and digest == row.sender_hash:
        return None
    return {"raw_enc": vault.current.encrypt(text), "sender_hash": digest}


def _open(vault: Vault, blob: bytes, what: str) -> str:
    try:
        return vault.decrypt(blob)
    except Unreadable:
        raise Unreadable(f"{what} {UNREADABLE_HINT}") from None


def _rehash(vault: Vault, digest: str, candidates: Iterable[str]) -> str:
    """The current key's hash of whichever value of the request `digest` is the hash of
    (the sender: `From`, `To` or `email`, as the webhook stored it); unchanged if none."""
    for value in candidates:
        for text in (value, value.partition(":")[2]):  # "whatsapp:+52..." as well
            if text and digest in vault.lookup_hashes(text):
                return vault.lookup_hash(text)
    return digest


def _strings(data: Any) -> list[str]:
    if isinstance(data, dict):
        return [s for v in data.values() for s in _strings(v)]
    if isinstance(data, list):
        return [s for v in data for s in _strings(v)]
    return [data] if isinstance(data, str) else []


def _rotate_rows(rt: Runtime, tbl: Table, tally: Tally, rewrite: Rewrite, batch_size: int,
                 check_only: bool, progress: Progress | None) -> None:
    kind = "contacts" if tbl is _contacts else "inbound"
    last_id, seen = 0, 0
    while True:
        with rt.db.session() as session:
            rows = session.execute(select(tbl).where(tbl.c.id > last_id)
                                   .order_by(tbl.c.id).limit(batch_size)).all()
            if not rows:
                return
            for row in rows:
                try:
                    values = rewrite(rt.vault, row)
                except Unreadable as exc:
                    tally.unreadable.append(str(exc))
                    continue
                if values is None:
                    tally.current += 1
                elif not check_only and _compare_and_set(session, tbl, row, values):
                    tally.rewritten += 1
                elif check_only:
                    tally.rewritten += 1
            last_id, seen = rows[-1].id, seen + len(rows)
        if progress is not None:
            progress(kind, seen)


def _compare_and_set(session: Session, tbl: Table, row: Any, values: dict[str, Any]) -> bool:
    """Write `values` unless the row's ciphertext changed since it was read (a roster
    import gave the volunteer a new number meanwhile, already under the current key)."""
    enc = "value_enc" if tbl is _contacts else "raw_enc"
    done = session.execute(update(tbl).where(tbl.c.id == row.id,
                                             tbl.c[enc] == getattr(row, enc)).values(**values))
    return bool(getattr(done, "rowcount", 0))


# --- spool ---------------------------------------------------------------------------------


def _rotate_spool(vault: Vault, directory: Path, tally: Tally, check_only: bool,
                  progress: Progress | None) -> None:
    """Rewrite each waiting request under the current key; one set aside as unreadable
    goes back in line when a configured key opens it."""
    for n, path in enumerate(kept_files(directory), 1):
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            continue  # replayed meanwhile
        if vault.decrypt_current(blob) is not None and path.suffix == SUFFIX:
            tally.current += 1
            continue
        try:
            text = _open(vault, blob, f"spooled request {path}")
        except Unreadable as exc:
            tally.unreadable.append(str(exc))
            continue
        if not check_only:
            write_private(path.with_suffix(SUFFIX), vault.current.encrypt(text))
            if path.suffix != SUFFIX:
                path.unlink(missing_ok=True)
        tally.rewritten += 1
        if progress is not None:
            progress("spool", n)


def write_private(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (temporary file, fsync, rename), mode 0600."""
    tmp = path.with_name(path.name + ".rotating")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
