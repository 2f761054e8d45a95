"""Shared fixtures: a tiny sample generated once per session, copied for tests that change it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from ingestion.paths import DataLayout
from ingestion.sample_data import SIZES, generate

REPO_ROOT = Path(__file__).resolve().parent.parent


_TEST_DATA_DIR: list[str] = []


def pytest_configure(config):
    """Code imported by tests (the Dagster definitions) must never touch the user's data/."""
    if "PLATFORM_DATA_DIR" not in os.environ:
        _TEST_DATA_DIR.append(tempfile.mkdtemp(prefix="platform-test-data-"))
        os.environ["PLATFORM_DATA_DIR"] = _TEST_DATA_DIR[0]


def pytest_unconfigure(config):
    for path in _TEST_DATA_DIR:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory) -> DataLayout:
    """A pristine tiny sample (sources only, nothing loaded). Do not modify: use `sample`."""
    layout = DataLayout(tmp_path_factory.mktemp("tiny-sample"))
    generate(layout, SIZES["tiny"], seed=42)
    return layout


@pytest.fixture
def sample(tiny_sample: DataLayout, tmp_path: Path) -> DataLayout:
    """A private copy of the tiny sample that a test may change and load."""
    root = tmp_path / "data"
    shutil.copytree(tiny_sample.root, root)
    return DataLayout(root)
