"""Per-module results of the last `mutmut run` (read from mutants/*.meta), with the mutants
judged equivalent (listed in docs/mutation.md) set apart.

Killed counts timeouts (the mutant made the tests hang: they did not pass). The kill rate
is killed / (total - equivalent); exit status 1 when a module is under TARGET.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = ["dispatcher/lifecycle.py", "dispatcher/acks.py", "dispatcher/escalation/policy.py",
           "channels/retry.py"]
TARGET = 0.90
#: A line of docs/mutation.md's "Equivalent mutants" section: "- `mutant name`: why".
EQUIVALENT = re.compile(r"^- `([^`]+__mutmut_\d+)`")
KILLED = {1, 3, 36, 24, -24, 152, 255}  # mutmut's exit codes for killed and timeout


def equivalents() -> set[str]:
    text = (ROOT / "docs" / "mutation.md").read_text(encoding="utf-8")
    listed = text.split("## Equivalent mutants", 1)[-1]
    return {m.group(1) for line in listed.splitlines() if (m := EQUIVALENT.match(line))}


def main() -> int:
    judged = equivalents()
    seen: set[str] = set()
    failed = False
    print(f"{'module':34} {'killed':>6} {'total':>6} {'equiv':>6} {'alive':>6} {'rate':>7}")
    for module in MODULES:
        meta = ROOT / "mutants" / f"{module}.meta"
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        killed = sum(1 for c in codes.values() if c in KILLED)
        equivalent = [k for k in codes if k in judged]
        seen.update(equivalent)
        alive = sorted(k for k, c in codes.items() if c not in KILLED and k not in judged)
        for name in equivalent:
            if codes[name] in KILLED:
                print(f"  note: {name} is listed as equivalent but was killed")
        rate = killed / max(1, len(codes) - len(equivalent))
        failed |= rate < TARGET
        print(f"{module:34} {killed:6} {len(codes):6} {len(equivalent):6} {len(alive):6} "
              f"{rate:7.1%}")
        for name in alive:
            print(f"  alive: {name} ({codes[name]})")
    for name in sorted(judged - seen):
        print(f"  note: {name} is listed as equivalent but is no mutant of this run")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
