"""The order and the units in which the test workers get the suite (tests/scheduling.py)."""

from __future__ import annotations

from tests.scheduling import LONGEST_FILES, SPLIT_FILES, LongestFirst, rank


def test_a_split_files_tests_are_units_of_their_own_and_keep_its_head_start() -> None:
    scheduler = LongestFirst.__new__(LongestFirst)  # _split_scope reads no state
    model = "tests/model/test_alert_model.py"
    assert model in SPLIT_FILES
    sqlite, postgres = (scheduler._split_scope(f"{model}::test_alert_model_{db}")
                        for db in ("sqlite", "postgres"))
    assert sqlite != postgres
    assert rank(sqlite) == rank(postgres) == LONGEST_FILES.index(model)
    # Any other file stays one unit.
    assert scheduler._split_scope("tests/test_db.py::test_a") == \
        scheduler._split_scope("tests/test_db.py::test_b") == "tests/test_db.py"
    assert rank("tests/test_db.py") == len(LONGEST_FILES)
