"""The parsed dbt project, shared by the tests that read it."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO_ROOT

MANIFEST = REPO_ROOT / "dbt_project" / "target" / "manifest.json"


@pytest.fixture(scope="session")
def manifest() -> dict:
    assert MANIFEST.exists(), "run `make manifest` (make test does) to parse the dbt project"
    return json.loads(MANIFEST.read_text())
