"""The order in which `--dist loadfile` hands test files to the workers: longest first.

pytest-xdist hands out the files with the most tests first, which puts the one- and
two-test files that run for minutes (the fuzzer, the model, the chaos run) last: the
other workers then sit idle while one finishes them. Handing those out first lets the
hundreds of short files fill in around them.
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadFileScheduling

#: The files that take longest, longest first (from `pytest --durations=0`, summed per
#: file, on the 2-core CI machine). A file missing here only loses its head start.
LONGEST_FILES = (
    "tests/integration/test_api_fuzz.py",
    "tests/model/test_alert_model.py",
    "tests/reliability/test_chaos.py",
    "tests/reliability/test_disk_full.py",
    "tests/test_backup.py",
    "tests/reliability/test_kill_fanout.py",
    "tests/reliability/test_postgres_workers.py",
    "tests/web/test_webhooks.py",
    "tests/privacy/test_rotation.py",
    "tests/browser/test_dashboard_browser.py",
    "tests/web/test_board_stream.py",
    "tests/browser/test_accessibility.py",
    "tests/reliability/test_restart.py",
    "tests/test_demo.py",
    "tests/browser/test_inbox_compose.py",
    "tests/cli/test_cli_errors.py",
)


#: Files whose tests are each long (mostly one test run on each database): each test is a
#: unit of its own, so two workers run them at once where one ran them in turn (the model
#: file's two tests, 137 s and 54 s in a loaded run, had held one worker in turn).
SPLIT_FILES = frozenset(LONGEST_FILES[:6])


def rank(scope: str) -> int:
    """Where a file (or a split file's test) goes in the queue: the listed ones by their
    place, the rest after."""
    try:
        return LONGEST_FILES.index(scope.split("::", 1)[0])
    except ValueError:
        return len(LONGEST_FILES)


class LongestFirst(LoadFileScheduling):
    """`--dist loadfile`, the `SPLIT_FILES` a unit per test, the queue reordered by `rank`
    before the first unit is given."""

    _ordered = False

    def _split_scope(self, nodeid: str) -> str:
        file = nodeid.split("::", 1)[0]
        return nodeid if file in SPLIT_FILES else file

    def _assign_work_unit(self, node: Any) -> None:
        if not self._ordered:
            queue = sorted(self.workqueue.items(), key=lambda item: rank(item[0]))
            self.workqueue.clear()
            self.workqueue.update(queue)
            self._ordered = True
        super()._assign_work_unit(node)
