"""DuckDB's extensions loaded from their PyPI wheels (`duckdb-ext-*`).

DuckDB installs an extension by downloading it from its own site at first use, which fails on a
locked-down machine; the wheels put the same files in site-packages, pinned in the lock file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb


def load_extension(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    """Load extension `name` into `conn` from its wheel; nothing is downloaded."""
    spec = importlib.util.find_spec("duckdb_ext")
    platform = conn.execute("pragma platform").fetchone()[0]
    folder = Path(next(iter(spec.submodule_search_locations))) if spec else Path("duckdb_ext")
    path = folder / "extensions" / f"v{duckdb.__version__}" / platform / f"{name}.duckdb_extension"
    if not path.exists():
        raise FileNotFoundError(f"DuckDB extension {name} for DuckDB {duckdb.__version__} on {platform} is not "
                                f"installed ({path}): install the duckdb-ext-* package of the same release")
    conn.execute(f"load '{path}'")
