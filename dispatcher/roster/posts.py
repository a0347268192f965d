"""Posts and their zones, loaded from `config/posts/<key>.toml` into the database."""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.crypto import Vault
from dispatcher.errors import InvalidInput, NotFound
from dispatcher.models import Contact, Post, Volunteer, Zone
from dispatcher.settings import Settings
from dispatcher.text import fold

#: Post used when the settings name none and the database holds none.
DEFAULT_POST = "mexico-city"


@dataclass(frozen=True)
class DutyOfficer:
    name: str
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class PostConfig:
    key: str
    name: str
    default_region: str
    default_language: str
    timezone: str
    help_line: str
    zones: list[str]
    duty_officers: list[DutyOfficer] = field(default_factory=list)
    #: Zone name -> other names it goes by: abbreviations ("Chis"), ISO 3166-2 codes
    #: ("MX-CHP"), as CAP messages from national services name areas.
    zone_aliases: dict[str, list[str]] = field(default_factory=dict)


def load_post_config(config_dir: Path, key: str) -> PostConfig:
    path = config_dir / "posts" / f"{key}.toml"
    if not path.exists():
        known = sorted(p.stem for p in (config_dir / "posts").glob("*.toml"))
        raise NotFound(f"post {key!r} has no file {path} (known posts: {', '.join(known)})")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return PostConfig(
        key=key,
        name=data["name"],
        default_region=data["default_region"],
        default_language=data.get("default_language", "en"),
        timezone=data.get("timezone", "UTC"),
        help_line=data.get("help_line", ""),
        zones=list(data.get("zones", [])),
        duty_officers=[DutyOfficer(**d) for d in data.get("duty_officers", [])],
        zone_aliases={str(k): [str(a) for a in v]
                      for k, v in data.get("zone_aliases", {}).items()},
    )


def zone_aliases(config_dir: Path, key: str) -> dict[str, str]:
    """Every alias and code of the post's zones -> the zone's name; unknown zones refused."""
    cfg = load_post_config(config_dir, key)
    known = {fold(z) for z in cfg.zones}
    out: dict[str, str] = {}
    for zone, names in cfg.zone_aliases.items():
        if fold(zone) not in known:
            raise InvalidInput(f"config/posts/{key}.toml: zone_aliases names zone {zone!r}, "
                               "which is not in its zones")
        for name in names:
            out[name] = zone
    return out


def ensure_post(session: Session, settings: Settings, vault: Vault) -> Post:
    """The post this deployment serves, created or brought up to date from config."""
    key = settings.post
    if key is None:
        posts = session.scalars(select(Post)).all()
        if len(posts) == 1:
            return posts[0]
        key = DEFAULT_POST
    post = session.scalar(select(Post).where(Post.key == key))
    cfg_path = settings.config_dir / "posts" / f"{key}.toml"
    if post is not None and not cfg_path.exists():
        return post
    cfg = load_post_config(settings.config_dir, key)
    if post is None:
        post = Post(key=key, name=cfg.name, default_region=cfg.default_region)
        session.add(post)
        audit.record(session, "system", "post.created", post=key)
    post.name = cfg.name
    post.default_region = cfg.default_region
    post.default_language = cfg.default_language
    post.timezone = cfg.timezone
    post.help_line = cfg.help_line
    session.flush()
    existing = {z.key for z in session.scalars(select(Zone).where(Zone.post_id == post.id))}
    for name in cfg.zones:
        if fold(name) not in existing:
            session.add(Zone(post_id=post.id, name=name, key=fold(name)))
            existing.add(fold(name))
    _sync_duty_officers(session, post, cfg.duty_officers, vault)
    session.flush()
    return post


def _sync_duty_officers(
    session: Session, post: Post, officers: list[DutyOfficer], vault: Vault
) -> None:
    from dispatcher.roster.contacts import normalise_email, normalise_sms_phone, set_contact

    current = {
        v.name: v
        for v in session.scalars(
            select(Volunteer).where(Volunteer.post_id == post.id, Volunteer.kind == "duty_officer")
        )
    }
    for officer in officers:
        vol = current.get(officer.name)
        if vol is None:
            vol = Volunteer(
                post_id=post.id,
                kind="duty_officer",
                name=officer.name,
                languages=post.default_language,
            )
            session.add(vol)
            session.flush()
        if officer.phone:
            try:
                phone = normalise_sms_phone(officer.phone, post.default_region)
            except ValueError as exc:
                raise InvalidInput(f"config/posts/{post.key}.toml: duty officer "
                                   f"{officer.name!r}: phone: {exc}") from None
            set_contact(session, vault, vol, "sms", phone)
        if officer.email:
            set_contact(session, vault, vol, "email", normalise_email(officer.email))


def zones_by_key(session: Session, post: Post) -> dict[str, Zone]:
    return {z.key: z for z in session.scalars(select(Zone).where(Zone.post_id == post.id))}


def find_zone(session: Session, post: Post, name: str) -> Zone:
    """The zone named (case and accents ignored), or an error naming the closest one."""
    zones = zones_by_key(session, post)
    zone = zones.get(fold(name))
    if zone is None:
        raise InvalidInput(unknown_zone_message(name, zones))
    return zone


def unknown_zone_message(name: str, zones: dict[str, Zone]) -> str:
    close = difflib.get_close_matches(fold(name), list(zones), n=1, cutoff=0.5)
    hint = f" (did you mean '{zones[close[0]].name}'?)" if close else ""
    return f"zone '{name}' not found{hint}"


def duty_officers(session: Session, post: Post) -> list[Volunteer]:
    return list(
        session.scalars(
            select(Volunteer)
            .where(Volunteer.post_id == post.id, Volunteer.kind == "duty_officer")
            .order_by(Volunteer.id)
        )
    )


def contact_of(volunteer: Volunteer, channel: str) -> Contact | None:
    return next((c for c in volunteer.contacts if c.channel == channel), None)
