"""Large synthetic rosters for the benchmarks, written in bulk (the importer is per-row)."""

from __future__ import annotations

import json
import os
import resource
import sys
from datetime import date

from sqlalchemy import insert, select

from dispatcher.crypto import mask_contact
from dispatcher.models import Contact, Membership, Volunteer, Zone
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime

#: Bench volunteers' numbers: +52 55 6xxx xxxx (valid Mexico City mobiles, fictitious).
PHONE_BASE = 525560000000


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
            for start in range(0, len(rows), 5000):
                session.execute(insert(table), rows[start:start + 5000])
    return phones


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
