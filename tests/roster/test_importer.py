"""Roster import: all or nothing, every bad line named, numbers normalised and encrypted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from dispatcher.cli.main import app
from dispatcher.errors import InvalidInput
from dispatcher.models import AuditEvent, Contact, Membership, Volunteer, Zone
from dispatcher.roster.gaps import find_gaps
from dispatcher.roster.importer import RosterError, import_roster
from dispatcher.roster.listing import roster_rows
from dispatcher.roster.posts import ensure_post
from dispatcher.roster.sample import import_sample_roster
from dispatcher.runtime import Runtime
from tests.conftest import SAMPLE_ROSTER

SAMPLE = SAMPLE_ROSTER
HEADER = "name,zone,rank,phone,email,languages,term_start,term_end,preferred_channel\n"
GOOD = "Ana Morales,Chiapas,primary,961 123 0101,ana@example.org,es;en,2026-03-01,2027-02-28,sms\n"


def write(tmp_path: Path, body: str, name: str = "roster.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def do_import(rt: Runtime, path: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        return import_roster(session, rt.vault, post, path, **kwargs)  # type: ignore[arg-type]


def counts(rt: Runtime) -> tuple[int, int, int]:
    with rt.db.session() as s:
        ensure_post(s, rt.settings, rt.vault)
        return (
            s.scalar(select(func.count()).select_from(Volunteer).where(Volunteer.kind == "clv")),
            s.scalar(select(func.count()).select_from(Membership)),
            s.scalar(select(func.count()).select_from(Zone)),
        )


def test_sample_roster_imports_with_e164_numbers(rt: Runtime) -> None:
    result = do_import(rt, SAMPLE)
    assert result.rows == 27
    assert result.volunteers_created == 26  # Zachary Miller serves two zones
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        rows = roster_rows(session, rt.vault, post)
    by_name = {(r["name"], r["zone"]): r for r in rows}
    assert by_name[("Ana Morales", "Chiapas")]["phone"] == "+529611230101"
    # "+52 1 55 ..." (Mexico's obsolete mobile prefix) is normalised, not refused.
    assert by_name[("Fernando Díaz", "Mexico City")]["phone"] == "+525551000203"
    # Zone names match without regard to accents: "Queretaro" is Querétaro.
    assert by_name[("Teresa Vargas", "Querétaro")]["rank"] == "primary"
    assert by_name[("Hector Lima", "Estado de México")]["email"] is None


def test_four_bad_lines_import_nothing_and_are_all_named(rt: Runtime, tmp_path: Path) -> None:
    body = (
        GOOD
        + "Bob,Oaxca,primary,951 510 1001,bob@example.org,es,2026-03-01,2027-02-28,\n"  # line 3
        + "Cara,Puebla,captain,222 230 0801,cara@example.org,es,2026-03-01,2027-02-28,\n"  # 4
        + "Dan,Puebla,alternate1,12345,dan@example.org,en,2026-03-01,2027-02-28,\n"  # 5
        + "Eve,Morelos,primary,777 310 0701,eve@example.org,en,2026-03-01,2027-02-28,\n"
        + "Fay,Morelos,alternate1,777 310 0702,fay@example,en,2027-03-01,2026-02-28,\n"  # 7
    )
    before = counts(rt)
    with pytest.raises(RosterError) as info:
        do_import(rt, write(tmp_path, body))
    assert sorted({e.line for e in info.value.errors}) == [3, 4, 5, 7]
    message = str(info.value)
    assert "line 3: zone: zone 'Oaxca' not found (did you mean 'Oaxaca'?)" in message
    assert "line 4: rank" in message and "captain" in message
    assert "line 5: phone" in message
    assert "line 7: email" in message and "line 7: term_end" in message
    assert counts(rt) == before


def test_good_file_imports_after_bad_one_was_fixed(rt: Runtime, tmp_path: Path) -> None:
    with pytest.raises(RosterError):
        do_import(
            rt,
            write(
                tmp_path, GOOD + "Bob,Nowhere,primary,,bob@example.org,,2026-01-01,2027-01-01,\n"
            ),
        )
    result = do_import(rt, write(tmp_path, GOOD))
    assert result.volunteers_created == 1
    assert counts(rt)[:2] == (1, 1)


def test_unknown_zone_can_be_created(rt: Runtime, tmp_path: Path) -> None:
    path = write(tmp_path, "Ines,Cancún,primary,998 100 0001,,es,2026-01-01,2027-01-01,\n")
    with pytest.raises(RosterError, match="Cancún"):
        do_import(rt, path)
    result = do_import(rt, path, create_zones=True)
    assert result.zones_created == ["Cancún"]
    with rt.db.session() as s:
        assert s.scalar(select(Zone).where(Zone.key == "cancun")) is not None


def test_dry_run_validates_and_changes_nothing(rt: Runtime) -> None:
    before = counts(rt)
    result = do_import(rt, SAMPLE, dry_run=True)
    assert result.rows == 27 and result.dry_run
    assert counts(rt) == before


@pytest.mark.parametrize(
    ("row", "field", "fragment"),
    [
        ("Ann,Chiapas,primary,,,es,2026-01-01,2027-01-01,", "phone", "needs a phone or an email"),
        (",Chiapas,primary,961 123 0101,,es,2026-01-01,2027-01-01,", "name", "empty"),
        ("Ann,,primary,961 123 0101,,es,2026-01-01,2027-01-01,", "zone", "empty"),
        ("Ann,Chiapas,alternate0,961 123 0101,,es,2026-01-01,2027-01-01,", "rank", "from 1"),
        ("Ann,Chiapas,primary,not-a-number,,es,2026-01-01,2027-01-01,", "phone", "not a"),
        ("Ann,Chiapas,primary,+52 1 961 12,,es,2026-01-01,2027-01-01,", "phone", "not a valid"),
        ("Ann,Chiapas,primary,,ann@@x.org,es,2026-01-01,2027-01-01,", "email", "not an email"),
        ("Ann,Chiapas,primary,961 123 0101,,spanish!,2026-01-01,2027-01-01,", "languages", "code"),
        ("Ann,Chiapas,primary,961 123 0101,,es,01/02/2026,2027-01-01,", "term_start", "ISO"),
        ("Ann,Chiapas,primary,961 123 0101,,es,2026-01-01,2026-01-01,", "term_end", "not after"),
        (
            "Ann,Chiapas,primary,961 123 0101,,es,2026-01-01,2027-01-01,fax",
            "preferred_channel",
            "'sms' or 'email'",
        ),
        (
            "Ann,Chiapas,primary,,a@example.org,es,2026-01-01,2027-01-01,sms",
            "preferred_channel",
            "no phone",
        ),
    ],
)
def test_each_validation_rule_names_line_and_field(
    rt: Runtime, tmp_path: Path, row: str, field: str, fragment: str
) -> None:
    with pytest.raises(RosterError) as info:
        do_import(rt, write(tmp_path, GOOD + row + "\n"))
    errors = info.value.errors
    assert any(e.line == 3 and e.field == field and fragment in e.message for e in errors), errors
    assert counts(rt)[:2] == (0, 0)


def test_duplicate_row_is_refused(rt: Runtime, tmp_path: Path) -> None:
    with pytest.raises(RosterError, match="line 3: zone: duplicate.*line 2"):
        do_import(rt, write(tmp_path, GOOD + GOOD))


BRUNO = "Bruno Keller,Oaxaca,primary,{phone},{email},en,2026-03-01,2027-02-28,\n"


@pytest.mark.parametrize(
    ("phone", "email", "field", "shown", "rule"),
    [
        ("+52 961 123 0101", "bruno@example.org", "phone", "+52******0101", "one number"),
        ("951 510 1001", "ana@EXAMPLE.org", "email", "a***@example.org", "one email address"),
    ],
)
def test_one_contact_for_two_people_is_refused_naming_both_lines(
    rt: Runtime, tmp_path: Path, phone: str, email: str, field: str, shown: str, rule: str
) -> None:
    body = GOOD + "Carmen Ruiz,Chiapas,alternate1,961 123 0103,,es,2026-03-01,2027-02-28,\n"
    body += BRUNO.format(phone=phone, email=email)  # line 4: Ana's number written another way
    with pytest.raises(RosterError) as info:
        do_import(rt, write(tmp_path, body))
    assert str(info.value).splitlines()[1:] == [
        f"line 4: {field}: {shown} is also on line 2 (Ana Morales); {rule} belongs to one "
        "volunteer"]
    assert counts(rt)[:2] == (0, 0)
    assert "961 123 0101" not in str(info.value) and "1230101" not in str(info.value)


def test_one_volunteer_in_two_zones_keeps_one_number(rt: Runtime, tmp_path: Path) -> None:
    second_zone = GOOD.replace("Chiapas,primary", "Oaxaca,alternate1")
    result = do_import(rt, write(tmp_path, GOOD + second_zone))
    assert (result.volunteers_created, result.memberships_created) == (1, 2)


def test_reimport_giving_a_volunteers_number_to_another_is_refused(
    rt: Runtime, tmp_path: Path
) -> None:
    do_import(rt, write(tmp_path, GOOD))
    before = counts(rt)
    taken = write(tmp_path, BRUNO.format(phone="961 123 0101", email=""), "taken.csv")
    for dry_run in (True, False):
        with pytest.raises(RosterError) as info:
            do_import(rt, taken, dry_run=dry_run)
        assert ("line 2: phone: +52******0101 already belongs to Ana Morales in the roster; "
                "one number belongs to one volunteer") in str(info.value)
    assert counts(rt) == before


def test_number_handed_over_in_one_file_is_accepted(rt: Runtime, tmp_path: Path) -> None:
    do_import(rt, write(tmp_path, GOOD))
    handed = GOOD.replace("961 123 0101", "961 123 0199") + BRUNO.format(
        phone="961 123 0101", email="")
    do_import(rt, write(tmp_path, handed, "handed.csv"))
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        phones = {r["name"]: r["phone"] for r in roster_rows(session, rt.vault, post)}
    assert phones == {"Ana Morales": "+529611230199", "Bruno Keller": "+529611230101"}


def test_missing_column_is_named(rt: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("name,zone,phone\nAna,Chiapas,961 123 0101\n")
    with pytest.raises(RosterError, match="missing column.*rank"):
        do_import(rt, path)


def test_reimport_updates_instead_of_duplicating(rt: Runtime, tmp_path: Path) -> None:
    do_import(rt, SAMPLE)
    first = counts(rt)
    moved = write(tmp_path, GOOD.replace("primary", "alternate2"))
    result = do_import(rt, moved)
    assert result.volunteers_created == 0 and result.memberships_updated == 1
    assert counts(rt) == first


def test_import_is_audited(rt: Runtime) -> None:
    do_import(rt, SAMPLE)
    with rt.db.session() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "roster.imported"))
    assert event is not None and event.details["rows"] == 27


def test_contacts_are_encrypted_at_rest(rt: Runtime, sqlite_url: str) -> None:
    do_import(rt, SAMPLE)
    with rt.db.session() as s:
        contact = s.scalars(select(Contact).where(Contact.channel == "sms")).first()
        assert contact is not None
        assert b"+52" not in contact.value_enc
        assert contact.masked.startswith("+52") and "*" in contact.masked
        assert rt.vault.decrypt(contact.value_enc).startswith("+52")


def test_database_file_holds_no_number_or_address_in_clear(tmp_path: Path) -> None:
    from tests.conftest import make_settings

    db_file = tmp_path / "aln.db"
    runtime = Runtime.open(make_settings(f"sqlite:///{db_file}"))
    do_import(runtime, SAMPLE)
    runtime.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("aln.db*"))
    for needle in (b"9611230101", b"5551000201", b"ana.morales@example.org", b"2210901"):
        assert needle not in blob


def test_cli_roster_list_json_shows_e164_to_the_officer(cli_env: dict[str, str]) -> None:
    runner = CliRunner()
    imported = runner.invoke(app, ["roster", "import", str(SAMPLE)], env=cli_env)
    assert imported.exit_code == 0, imported.output
    listed = runner.invoke(app, ["roster", "list", "--zone", "chiapas", "--json"], env=cli_env)
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [r["name"] for r in rows] == ["Ana Morales", "Brian Keller", "Carmen Ruiz"]
    assert rows[0]["phone"] == "+529611230101"


def test_cli_bad_roster_exits_nonzero_naming_lines(cli_env: dict[str, str], tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "Bob,Oaxca,primary,951 510 1001,,es,2026-03-01,2027-02-28,\n")
    result = CliRunner().invoke(app, ["roster", "import", str(path)], env=cli_env)
    assert result.exit_code == 2
    assert "line 3" in result.output and "Oaxaca" in result.output


def import_sample(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        import_sample_roster(session, rt.vault, post, SAMPLE)


def test_gaps_of_the_sample_roster(rt: Runtime) -> None:
    import_sample(rt)  # terms moved to today: the same gaps whatever the date
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        gaps = find_gaps(session, post)
    assert gaps.zones_without_primary == ["Tabasco", "Tlaxcala"]
    assert gaps.zones_without_alternate == [
        "Guerrero",
        "Hidalgo",
        "Morelos",
        "Tabasco",
        "Tampico",
        "Tlaxcala",
    ]
    assert [g["name"] for g in gaps.terms_ended] == ["Luis Herrera"]
    assert [g["name"] for g in gaps.terms_ending_soon] == ["Pablo Guzmán"]
    assert gaps.no_usable_contact == [] and gaps.opted_out == []


def test_gaps_report_opted_out_and_unusable_paths(rt: Runtime) -> None:
    import_sample(rt)
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        hector = session.scalar(select(Volunteer).where(Volunteer.name == "Hector Lima"))
        assert hector is not None
        hector.contacts[0].opted_out = True
        session.flush()
        gaps = find_gaps(session, post)
    assert [g["name"] for g in gaps.opted_out] == ["Hector Lima"]
    assert [g["name"] for g in gaps.no_usable_contact] == ["Hector Lima"]
    assert gaps.opted_out[0]["contact"].count("*") >= 4


def test_a_field_over_the_limit_is_named_and_imports_nothing(rt: Runtime,
                                                            tmp_path: Path) -> None:
    long_name = "A" * 2000
    with pytest.raises(RosterError, match="line 3: name: is 2,000 characters long"):
        do_import(rt, write(tmp_path, GOOD + GOOD.replace("Ana Morales", long_name)))
    assert counts(rt)[0] == 0


def test_a_field_over_128_kb_is_a_clear_error_not_a_traceback(rt: Runtime,
                                                              tmp_path: Path) -> None:
    huge = "B" * (200 * 1024)
    with pytest.raises(RosterError, match="not readable CSV"):
        do_import(rt, write(tmp_path, GOOD.replace("Ana Morales", huge)))


def test_a_roster_file_over_the_size_cap_is_refused_before_it_is_read(
        rt: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dispatcher.roster.importer.ROSTER_MAX_BYTES", 1000)
    path = write(tmp_path, GOOD * 20)
    with pytest.raises(InvalidInput, match="a roster file may be at most 1,000 bytes"):
        do_import(rt, path)


@pytest.mark.postgres
def test_an_import_leaves_fresh_statistics_for_the_first_alert_on_postgresql(
        postgres_url: str) -> None:
    """The first alert after an import is planned on the imported roster: without
    statistics each zone's look for a reachable tier joined every contact."""
    from sqlalchemy import text

    from tests.conftest import make_settings

    runtime = Runtime.open(make_settings(postgres_url))
    try:
        with runtime.db.session() as session:
            post = ensure_post(session, runtime.settings, runtime.vault)
            import_sample_roster(session, runtime.vault, post, SAMPLE_ROSTER)
        with runtime.db.session() as session:
            memberships = session.scalar(select(func.count()).select_from(Membership))
            counted = dict(session.execute(text(
                "SELECT relname, reltuples FROM pg_class WHERE relnamespace = "
                "current_schema()::regnamespace AND relname IN "
                "('volunteers', 'contacts', 'memberships')")).all())
        assert memberships and counted["memberships"] == memberships
        assert counted["volunteers"] > 0 and counted["contacts"] > 0
    finally:
        runtime.close()


@pytest.mark.postgres
def test_an_import_beside_a_vacuum_keeps_its_rows_without_new_statistics(
        postgres_url: str) -> None:
    """ANALYZE waits for a VACUUM of the same table: the import gives the statistics up
    after a second, and commits its rows."""
    import threading

    from sqlalchemy import text

    from tests.conftest import make_settings

    runtime = Runtime.open(make_settings(postgres_url))
    vacuum = runtime.db.engine.connect()
    try:
        vacuum.execute(text("LOCK TABLE memberships IN SHARE UPDATE EXCLUSIVE MODE"))
        done: list[object] = []

        def run_import() -> None:
            with runtime.db.session() as session:
                post = ensure_post(session, runtime.settings, runtime.vault)
                done.append(import_sample_roster(session, runtime.vault, post, SAMPLE_ROSTER))

        thread = threading.Thread(target=run_import)
        thread.start()
        thread.join(15)
        assert done, "the import waited for the vacuum"
    finally:
        vacuum.rollback()
        vacuum.close()
    with runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Membership))
        assert session.execute(text("SHOW lock_timeout")).scalar() == "0"
    runtime.close()
