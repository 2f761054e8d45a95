"""DuckDB's extensions loaded from their PyPI wheels (`duckdb-ext-*`).

DuckDB installs an extension by downloading it from its own site at first use, which fails on a
locked-down machine; the wheels put the same files in site-packages, pinned in the lock file.

DuckDB also checks an extension's signature each time a database loads it: about half a second
for each of DuckLake's two (50 MB each), paid by every reader that opens a new snapshot, which is
most of the delay between a publish and a live dashboard's update. The wheels' files were already
checked against the lock file's hashes when they were installed, so `connect` opens databases
that load them without checking again. Only the wheels' paths are loaded, and these connections
run only SQL the platform writes (MetricFlow's; the SQL endpoint's catalog has a database of its
own), so no user's statement can load anything else on them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory database that loads the wheels' extensions without checking their signatures again."""
    return duckdb.connect(config={"allow_unsigned_extensions": "true"})


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
