"""The officer API's schema is committed (docs/openapi.json): the served one must equal it,
so every API change is deliberate and shows in review. After a deliberate change:
`make openapi` (writes the file from the served schema) and commit the diff."""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from dispatcher.web.problems import PROBLEM_MEDIA_TYPE
from tests.web.conftest import bearer

COMMITTED = Path(__file__).parents[2] / "docs" / "openapi.json"


def dumps(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@pytest.fixture
def served(app_rt: Any) -> dict[str, Any]:
    rt, client, tokens = app_rt
    r = client.get("/api/openapi.json", headers=bearer(tokens["viewer"]))
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def test_the_served_schema_is_the_committed_one(served: dict[str, Any],
                                                database_url: str) -> None:
    if os.environ.get("ALN_WRITE_OPENAPI") == "1" and database_url.startswith("sqlite"):
        COMMITTED.write_text(dumps(served))
    committed = COMMITTED.read_text()
    if dumps(served) != committed:
        diff = "".join(difflib.unified_diff(committed.splitlines(True),
                                            dumps(served).splitlines(True),
                                            "docs/openapi.json", "served", n=2))
        pytest.fail("the served API schema differs from docs/openapi.json; if the change "
                    f"is deliberate, run `make openapi` and commit it:\n{diff[:8000]}")


def test_every_route_lists_its_problems_with_a_model(served: dict[str, Any]) -> None:
    paths = served["paths"]
    assert paths and all(p.startswith("/api/") for p in paths), list(paths)
    for path, ops in paths.items():
        for method, op in ops.items():
            statuses = set(op["responses"])
            assert {"200", "401", "422"} <= statuses, (method, path, statuses)
            if method == "post":
                assert "403" in statuses, (method, path)  # a viewer, or a session cookie
            if "{" in path:
                assert "404" in statuses, (method, path)
            for status, response in op["responses"].items():
                content = response.get("content", {})
                if status.startswith(("4", "5")):
                    assert content[PROBLEM_MEDIA_TYPE]["schema"] == {
                        "$ref": "#/components/schemas/Problem"}, (method, path, status)
                else:
                    assert content["application/json"]["schema"], (method, path)


def test_limits_ids_and_durations_are_bounded_in_the_schema(served: dict[str, Any]) -> None:
    for path, ops in served["paths"].items():
        for op in ops.values():
            for param in op.get("parameters", []):
                schema = param["schema"]
                if param["name"] in ("alert_id", "response_id"):
                    assert (schema["minimum"], schema["maximum"]) == (1, 2**31 - 1), path
                if param["name"] == "limit":
                    bounded = schema.get("anyOf", [schema])[0]
                    assert (bounded["minimum"], bounded["maximum"]) == (1, 500), path
    alert_in = served["components"]["schemas"]["AlertIn"]["properties"]
    assert alert_in["ack_window"]["anyOf"][0]["pattern"]
    assert alert_in["draft_id"]["anyOf"][0]["maximum"] == 2**31 - 1
