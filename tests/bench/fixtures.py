"""Large synthetic rosters for the benchmarks, written in bulk (the importer is per-row)."""

from __future__ import annotations

import json
import os
import random
import resource
import sys
from datetime import date, timedelta

from sqlalchemy import insert, select

from dispatcher.crypto import mask_contact
from dispatcher.db import db_now
from dispatcher.models import (
    Alert,
    AlertZone,
    Contact,
    Deadline,
    Delivery,
    Membership,
    Recipient,
    Response,
    Volunteer,
    Zone,
)
from dispatcher.roster.importer import refresh_roster_statistics
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime

#: Bench volunteers' numbers: +52 55 6xxx xxxx (valid Mexico City mobiles, fictitious).
PHONE_BASE = 525560000000
#: Rows written per INSERT by the bulk fixtures.
INSERT_CHUNK = 5000


def bench_phone(i: int) -> str:
    return f"+{PHONE_BASE + i}"


def bulk_roster(rt: Runtime, n: int, *, zones: int = 15, email: bool = False,
                tiers: int = 1) -> list[str]:
    """`n` volunteers spread over the post's first `zones` zones; returns their phones."""
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        zone_ids = list(session.scalars(select(Zone.id).where(Zone.post_id == post.id)
                                        .order_by(Zone.id)))[:zones]
        first = (session.scalar(select(Volunteer.id).order_by(Volunteer.id.desc()).limit(1))
                 or 0) + 1
        vols, contacts, members = [], [], []
        phones = []
        for i in range(n):
            vid = first + i
            phone = bench_phone(i)
            phones.append(phone)
            vols.append({"id": vid, "post_id": post.id, "kind": "clv",
                         "name": f"Volunteer {i:06d}", "languages": "en"})
            contacts.append({"volunteer_id": vid, "channel": "sms",
                             "value_enc": rt.vault.encrypt(phone),
                             "value_hash": rt.vault.lookup_hash(phone),
                             "masked": mask_contact(phone), "opted_out": False})
            if email:
                address = f"v{i:06d}@example.org"
                contacts.append({"volunteer_id": vid, "channel": "email",
                                 "value_enc": rt.vault.encrypt(address),
                                 "value_hash": rt.vault.lookup_hash(address),
                                 "masked": mask_contact(address), "opted_out": False})
            tier = i % tiers
            members.append({"volunteer_id": vid, "zone_id": zone_ids[i % len(zone_ids)],
                            "rank": "primary" if tier == 0 else f"alternate{tier}",
                            "tier": tier, "term_start": date(2026, 1, 1),
                            "term_end": date(2030, 1, 1)})
        for table, rows in ((Volunteer, vols), (Contact, contacts), (Membership, members)):
            for start in range(0, len(rows), INSERT_CHUNK):
                session.execute(insert(table), rows[start:start + INSERT_CHUNK])
        refresh_roster_statistics(session)  # as `aln roster import` does
    return phones


def bulk_alert(rt: Runtime, *, seed: int = 7) -> int:
    """An alert to every volunteer of the roster (`bulk_roster`, with `tiers` >= 2), one
    delivery per contact of each volunteer asked, in the states a real one reaches: a
    third of the zones acknowledged, a third escalated to the next tier and waiting, a
    third unreached; acknowledgements (70 % of those asked), HELP (2 %), other replies
    and failures.
    Returns its id."""
    rng = random.Random(seed)
    with rt.db.session() as s:
        post_id = s.scalar(select(Zone.post_id).limit(1))
        now = db_now(s)
        alert = Alert(post_id=post_id, kind="security", exercise=True, title="Bench",
                      bodies={"en": {"sms": "x"}}, reply_code="1000", ack_window_seconds=900,
                      policy={}, state="active", sent_at=now)
        s.add(alert)
        s.flush()
        alert_id = alert.id
        members = s.execute(select(Membership.volunteer_id, Membership.zone_id,
                                   Membership.tier).order_by(Membership.volunteer_id)).all()
        zone_ids = sorted({m.zone_id for m in members})
        # Zone i: acknowledged (i % 3 == 0), escalated to tier 1 and waiting (1), unreached.
        fate = {z: ("acknowledged", "waiting", "unreached")[i % 3]
                for i, z in enumerate(zone_ids)}
        top = max(m.tier for m in members)
        s.execute(insert(AlertZone), [
            {"alert_id": alert_id, "zone_id": z, "state": fate[z],
             "current_tier": {"acknowledged": 0, "waiting": 1, "unreached": top}[fate[z]],
             "acknowledged_at": now + timedelta(seconds=30)
             if fate[z] == "acknowledged" else None,
             "unreached_at": now + timedelta(seconds=1800) if fate[z] == "unreached" else None}
            for z in zone_ids])
        s.execute(insert(Deadline), [
            {"alert_id": alert_id, "zone_id": z, "kind": "escalate", "tier": 1,
             "due_at": now + timedelta(seconds=900), "state": "pending"}
            for z in zone_ids if fate[z] == "waiting"])
        first = (s.scalar(select(Recipient.id).order_by(Recipient.id.desc()).limit(1)) or 0) + 1
        recs, responses = [], []
        for i, m in enumerate(members):
            rid = first + i
            asked = m.tier == 0 or (m.tier == 1 and fate[m.zone_id] != "acknowledged") or \
                fate[m.zone_id] == "unreached"
            roll = rng.random()
            if not asked:
                state = "pending"
            elif roll < 0.03:
                state = "failed"
            elif roll < 0.73 and fate[m.zone_id] != "unreached":
                state = "acknowledged"
            elif m.tier == 0 and fate[m.zone_id] != "acknowledged":
                state = "escalated"
            else:
                state = "notified"
            acked_at = now + timedelta(seconds=rng.uniform(5, 900)) \
                if state == "acknowledged" else None
            recs.append({"id": rid, "alert_id": alert_id, "volunteer_id": m.volunteer_id,
                         "zone_id": m.zone_id, "tier": m.tier, "skipped": [], "state": state,
                         "notified_at": now + timedelta(seconds=1) if asked else None,
                         "acknowledged_at": acked_at,
                         "acknowledged_via": "sms" if acked_at else None})
            reply = {"alert_id": alert_id, "recipient_id": rid, "volunteer_id": m.volunteer_id,
                     "zone_id": m.zone_id, "channel": "sms", "created_at": acked_at or now}
            if acked_at is not None:
                responses.append({**reply, "kind": "ack", "text": "YES 1000"})
            if asked and rng.random() < 0.02:
                responses.append({**reply, "kind": "help", "text": "HELP 1000 road blocked",
                                  "urgent": True})
            elif asked and rng.random() < 0.01:
                responses.append({**reply, "kind": "field_report", "text": "bridge closed"})
        for start in range(0, len(recs), INSERT_CHUNK):
            s.execute(insert(Recipient), recs[start:start + INSERT_CHUNK])
        for start in range(0, len(responses), INSERT_CHUNK):
            s.execute(insert(Response), responses[start:start + INSERT_CHUNK])
        rec_of = {r["volunteer_id"]: r for r in recs}
        deliveries = []
        for c in s.execute(select(Contact.id, Contact.volunteer_id, Contact.channel)):
            r = rec_of.get(c.volunteer_id)
            if r is None or r["state"] == "pending":  # a tier not asked has no messages yet
                continue
            state = "failed" if r["state"] == "failed" else rng.choice(
                ["delivered", "delivered", "sent"])
            deliveries.append({"alert_id": alert_id, "recipient_id": r["id"],
                               "contact_id": c.id, "channel": c.channel, "purpose": "alert",
                               "body": "x", "state": state, "attempts": 1,
                               "error_code": "30003" if state == "failed" else None})
        for start in range(0, len(deliveries), INSERT_CHUNK):
            s.execute(insert(Delivery), deliveries[start:start + INSERT_CHUNK])
    return alert_id


def peak_rss_mb() -> float:
    """This process's own peak resident memory.

    On Linux, VmHWM: `ru_maxrss` is carried over fork and exec, so a process started by
    a large parent would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / 1024 if sys.platform != "darwin" else usage / 1024 / 1024


def emit(result: dict[str, object]) -> None:
    """One JSON line per benchmark result, with the machine's core count."""
    result = {**result, "cores": os.cpu_count()}
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
