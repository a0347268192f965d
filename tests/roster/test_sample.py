"""The sample roster moves with the calendar: the demo and the tests see the same network
on any day (no terms that silently end next year)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest
import time_machine

from dispatcher.dispatch.plan import AlertRequest, plan_alert
from dispatcher.roster.gaps import find_gaps
from dispatcher.roster.posts import ensure_post
from dispatcher.roster.sample import SAMPLE_ROSTER_DAY, shift_terms
from tests.conftest import rt_with_roster

ROW = "Ana,Chiapas,primary,961 123 0101,,es,{start},{end},\n"
HEADER = "name,zone,rank,phone,email,languages,term_start,term_end,preferred_channel\n"


def test_terms_move_by_the_days_since_the_roster_was_written() -> None:
    text = HEADER + ROW.format(start="2026-03-01", end="2027-02-28")
    assert shift_terms(text, SAMPLE_ROSTER_DAY) == text
    assert shift_terms(text, date(2027, 11, 24)) == HEADER + ROW.format(
        start="2027-03-01", end="2028-02-28")
    # A date the importer would refuse is left for it to name.
    bad = HEADER + ROW.format(start="01/03/2026", end="2027-02-28")
    assert shift_terms(bad, date(2027, 11, 24)) == HEADER + ROW.format(
        start="01/03/2026", end="2028-02-28")


@pytest.mark.parametrize("day", [SAMPLE_ROSTER_DAY, date(2027, 1, 20), date(2028, 7, 1)])
def test_sample_roster_serves_on_any_day(tmp_path: Path, day: date) -> None:
    """On 2027-01-20 the file's own terms have ended for Mexico City: moved, they have not."""
    evening = datetime.combine(day, time(18, 0), tzinfo=UTC)
    with time_machine.travel(evening, tick=False):
        rt = rt_with_roster(f"sqlite:///{tmp_path / 'aln.db'}")
        try:
            with rt.db.session() as session:
                post = ensure_post(session, rt.settings, rt.vault)
                gaps = find_gaps(session, post)
                plan = plan_alert(session, rt.settings, post,
                                  AlertRequest(zones=["Mexico City"], body="Test"))
                first = sorted(t.volunteer.name for t in plan.zones[0].first)
        finally:
            rt.close()
    assert [g["name"] for g in gaps.terms_ended] == ["Luis Herrera"]
    assert [g["name"] for g in gaps.terms_ending_soon] == ["Pablo Guzmán"]
    assert first == ["Daniel Ortega", "Emily Carter"]

