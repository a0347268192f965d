"""`aln roster ...` and `aln zones ...`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from sqlalchemy import func, select

from dispatcher.cli.common import console, handle_errors, print_json, runtime, styled
from dispatcher.models import Membership, Zone
from dispatcher.roster.gaps import find_gaps
from dispatcher.roster.importer import import_roster
from dispatcher.roster.listing import roster_rows
from dispatcher.roster.posts import ensure_post

app = typer.Typer(help="Import, list and check the volunteer roster.", no_args_is_help=True)
zones_app = typer.Typer(help="The post's ALN zones.", no_args_is_help=True)


@app.command("import")
@handle_errors
def import_cmd(
    path: Path = typer.Argument(..., help="Roster CSV (UTF-8, header row)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate only; change nothing."),
    create_zones: bool = typer.Option(False, "--create-zones", help="Create unknown zones."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Import a roster: all rows or none."""
    with runtime() as rt, rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        result = import_roster(
            session, rt.vault, post, path, dry_run=dry_run, create_zones=create_zones
        )
    if as_json:
        print_json(result.__dict__)
        return
    verb = "would import" if dry_run else "imported"
    console.print(
        f"{verb} {result.rows} rows: {result.volunteers_created} new volunteers, "
        f"{result.volunteers_updated} updated, {result.memberships_created} new memberships"
        + (f", new zones: {', '.join(result.zones_created)}" if result.zones_created else "")
    )


@app.command("list")
@handle_errors
def list_cmd(
    zone: str | None = typer.Option(None, "--zone", help="Only this zone."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List volunteers by zone and rank, with their contact details."""
    with runtime() as rt, rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        rows = roster_rows(session, rt.vault, post, zone=zone)
    if as_json:
        print_json(rows)
        return
    table = Table("Zone", "Rank", "Name", "Phone", "Email", "Languages", "Term end", "Active")
    for r in rows:
        table.add_row(
            r["zone"],
            r["rank"],
            r["name"],
            r["phone"] or "-",
            r["email"] or "-",
            ";".join(r["languages"]),
            r["term_end"],
            "yes" if r["active"] else "NO",
        )
    console.print(table)


@app.command("gaps")
@handle_errors
def gaps_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    """Zones without a primary or an alternate, ended terms, unusable contacts, opt-outs."""
    with runtime() as rt, rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        gaps = find_gaps(session, post)
        post_name = post.name
    if as_json:
        print_json(gaps.to_dict())
        return
    print_gaps(gaps, post_name)


def print_gaps(gaps, post_name: str) -> None:  # type: ignore[no-untyped-def]
    console.print(styled((f"Roster gaps for {post_name}", "bold"), f": {gaps.count} finding(s)"))
    sections = [
        ("Zones with no active primary", [{"zone": z} for z in gaps.zones_without_primary]),
        ("Zones with no alternate", [{"zone": z} for z in gaps.zones_without_alternate]),
        ("Terms ended", gaps.terms_ended),
        ("Terms ending within 30 days", gaps.terms_ending_soon),
        (
            "Volunteers with no usable contact path",
            [
                {
                    "name": v["name"],
                    "paths": ", ".join(
                        f"{p['channel']} {p['contact']} ({p['why']})" for p in v["paths"]
                    )
                    or "none",
                }
                for v in gaps.no_usable_contact
            ],
        ),
        ("Opted-out contacts", gaps.opted_out),
        ("Dead contact paths", gaps.dead_paths),
        ("Volunteers reachable on one channel only", gaps.single_channel),
    ]
    for title, items in sections:
        if not items:
            console.print(f"  {title}: none")
            continue
        table = Table(*items[0].keys(), title=title, title_justify="left")
        for item in items:
            table.add_row(*(str(v) for v in item.values()))
        console.print(table)


@zones_app.command("list")
@handle_errors
def zones_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """The post's zones and how many volunteers each has."""
    with runtime() as rt, rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        counts = dict(
            session.execute(
                select(Membership.zone_id, func.count()).group_by(Membership.zone_id)
            ).all()
        )
        zones = [
            {"zone": z.name, "volunteers": counts.get(z.id, 0)}
            for z in session.scalars(
                select(Zone).where(Zone.post_id == post.id).order_by(Zone.name)
            )
        ]
    if as_json:
        print_json(zones)
        return
    table = Table("Zone", "Volunteers")
    for z in zones:
        table.add_row(str(z["zone"]), str(z["volunteers"]))
    console.print(table)
