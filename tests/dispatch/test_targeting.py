"""Whom an alert can reach: a large alert's first reachable tier, found a page at a time,
is the one the whole roster's chain gives."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select, update

from dispatcher.db import db_today
from dispatcher.dispatch import targeting
from dispatcher.dispatch.targeting import chain, first_reachable_tier, zone_members
from dispatcher.models import Contact, Membership, Post, Zone
from dispatcher.runtime import Runtime
from tests.conftest import rt_with_roster


@pytest.fixture
def rt(database_url: str) -> Runtime:
    return rt_with_roster(database_url)


def _chains_agree(rt: Runtime, channels: list[str] | None) -> list[int | None]:
    """Each zone's first reachable tier, paged and whole; asserts they agree."""
    found = []
    with rt.db.session() as session:
        post = session.scalars(select(Post)).one()
        today = db_today(session, post.timezone)
        for zone_id in session.scalars(select(Zone.id).order_by(Zone.id)):
            whole = chain(zone_members(session, [zone_id]).get(zone_id, []), channels, today)
            paged = first_reachable_tier(session, zone_id, channels, today)
            assert paged == (whole[0] if whole else None), f"zone {zone_id}"
            found.append(paged)
    return found


@pytest.mark.parametrize(("first", "page"), [(1, 1), (1, 2), (1, 4), (2, 3), (16, 256)])
def test_the_first_reachable_tier_read_by_pages_is_the_whole_chains_first(
        rt: Runtime, first: int, page: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targeting, "REACH_FIRST_PAGE", first)
    monkeypatch.setattr(targeting, "REACH_PAGE", page)
    assert any(tier is not None for tier in _chains_agree(rt, None))
    assert any(tier is not None for tier in _chains_agree(rt, ["email"]))
    # Every primary's paths dead: the pages of tier 0 hold nobody, and the search goes on
    # into the alternates (the first tier any zone can reach is then above 0).
    with rt.db.session() as session:
        primaries = select(Membership.volunteer_id).where(Membership.tier == 0)
        session.execute(update(Contact).where(Contact.volunteer_id.in_(primaries))
                        .values(dead_reason="test: dead"))
    tiers = _chains_agree(rt, None)
    assert any(tier is not None and tier > 0 for tier in tiers), tiers
    # Nobody reachable at all.
    with rt.db.session() as session:
        session.execute(update(Contact).values(dead_reason="test: dead"))
    assert set(_chains_agree(rt, None)) == {None}


def test_a_page_of_a_zone_is_read_in_index_order_not_sorted(rt: Runtime) -> None:
    """SQLite's plan for each look of `first_reachable_tier`: the zone's memberships in
    (tier, id) order from `ix_memberships_zone_tier`, with no sort of the whole zone
    (which each look of a 100,000-volunteer alert had paid, zone after zone)."""
    if not rt.db.is_sqlite:
        pytest.skip("the plan checked is SQLite's; PostgreSQL's follows its statistics")
    with rt.db.session() as session:
        conn = session.connection()
        for after in (None, (0, 5)):
            compiled = targeting.reach_page(3, after, 16).compile(
                dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            plan = " | ".join(row[-1] for row in conn.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {compiled}"))
            assert "ix_memberships_zone_tier" in plan, plan
            assert "TEMP B-TREE" not in plan, plan


def test_memberships_are_indexed_by_zone_and_tier(rt: Runtime) -> None:
    """The migration's index is the model's, and the index on the zone alone (its prefix)
    is gone: one entry a membership, as before."""
    with rt.db.session() as session:
        found = {ix["name"]: ix["column_names"]
                 for ix in inspect(session.connection()).get_indexes("memberships")}
    assert found.get("ix_memberships_zone_tier") == ["zone_id", "tier", "id"], found
    assert "ix_memberships_zone_id" not in found, found


def test_members_are_read_with_the_sessions_unflushed_changes_and_real_dates(
        rt: Runtime) -> None:
    """Members come from the driver's rows, past SQLAlchemy's result: a path the session
    has just found dead (not flushed yet) is skipped all the same, and the terms are dates
    on both databases (SQLite keeps them as text)."""
    with rt.db.session() as session:
        post = session.scalars(select(Post)).one()
        today = db_today(session, post.timezone)
        zone_id = session.scalars(select(Membership.zone_id).where(Membership.tier == 0)
                                  .order_by(Membership.id).limit(1)).one()
        members = zone_members(session, [zone_id], 0)[zone_id]
        assert all(type(m.term_start) is type(today) and type(m.term_end) is type(today)
                   for m in members)
        assert all(m.volunteer.language_list for m in members)
        first = members[0]
        path = session.get(Contact, first.paths[0].id)
        assert path is not None
        path.dead_reason = "test: found dead"  # held by the session, not flushed
        again = zone_members(session, [zone_id], 0)[zone_id]
        assert [p.dead_reason for p in again[0].paths if p.id == path.id] == [
            "test: found dead"]
        targets = targeting.tier_targets(again, 0, None, today)
        mine = next(t for t in targets if t.volunteer.id == first.volunteer.id)
        assert path.id not in [c.id for c in mine.contacts]
        assert any(s.reason.startswith("dead path") for s in mine.skipped)
        session.rollback()
