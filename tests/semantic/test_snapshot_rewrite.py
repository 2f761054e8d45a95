"""`snapshots.rewrite`, which erasure uses: on a small DuckLake published from a tiny warehouse, a
change runs in one transaction, every older snapshot is expired (even one a reader may still hold),
and no file under the published folder keeps the deleted rows, not even the catalog's statistics; a
change that fails leaves every snapshot as it was."""

from __future__ import annotations

import duckdb
import pytest

from semantic import snapshots

GONE = "u-erased-0001"  # the smallest id: the catalog's minimum statistics name it


def warehouse(path, users: list[str]):
    with duckdb.connect(str(path)) as conn:
        conn.execute("create schema marts")
        conn.execute("create table marts.dim_people as select 't1' as tenant_id, unnest(?) as user_id, 1 as visits",
                     [users])
    return path


def files_holding(published_dir, text: str) -> list[str]:
    found = []
    with duckdb.connect() as conn:
        for path in sorted(p for p in published_dir.rglob("*") if p.is_file()):
            if path.suffix == ".parquet":
                hit = conn.execute("select count(*) from read_parquet(?) where user_id = ?",
                                   [str(path), text]).fetchone()[0]
            else:
                hit = text.encode() in path.read_bytes()
            if hit:
                found.append(path.name)
    return found


def erase(conn) -> frozenset[str]:
    conn.execute(f"delete from {snapshots.CATALOG}.marts.dim_people where user_id = ?", [GONE])
    return frozenset({"marts.dim_people"})


@pytest.fixture
def published(tmp_path):
    published_dir = tmp_path / "published"
    snapshots.publish(warehouse(tmp_path / "one.duckdb", [GONE, "u2"]), published_dir)
    snapshots.publish(warehouse(tmp_path / "two.duckdb", [GONE, "u2", "u3"]), published_dir)
    return published_dir


def test_a_rewrite_leaves_one_snapshot_and_no_file_holding_the_rows(published):
    before = snapshots.current(published)
    held = snapshots.attach(published, before.snapshot_id)  # a reader on the old snapshot
    assert files_holding(published, GONE)
    assert len(held.execute("select * from ducklake_snapshots('warehouse')").fetchall()) >= 2

    after = snapshots.rewrite(published, erase)

    assert snapshots.current(published) == after and after.snapshot_id != before.snapshot_id
    assert files_holding(published, GONE) == []
    with after.connect() as conn:
        assert conn.execute("select user_id from marts.dim_people order by 1").fetchall() == [("u2",), ("u3",)]
        assert [r[0] for r in conn.execute("select snapshot_id from ducklake_snapshots('warehouse')").fetchall()] \
            == [after.snapshot_id]
    # the reader on the old snapshot cannot read it any more; attaching anew gives the new one
    with pytest.raises(duckdb.Error):
        held.execute("select * from marts.dim_people").fetchall()
    held.close()
    with pytest.raises(duckdb.Error):
        snapshots.attach(published, before.snapshot_id).execute("select * from marts.dim_people").fetchall()


def test_a_failed_rewrite_changes_nothing(published):
    before = snapshots.current(published)
    count = len(snapshots.attach(published).execute("select * from ducklake_snapshots('warehouse')").fetchall())

    def fails(conn):
        erase(conn)
        raise RuntimeError("the rollups failed")

    with pytest.raises(RuntimeError, match="the rollups failed"):
        snapshots.rewrite(published, fails)
    assert snapshots.current(published) == before
    with before.connect() as conn:
        assert conn.execute("select count(*) from marts.dim_people where user_id = ?", [GONE]).fetchone()[0] == 1
        assert len(conn.execute("select * from ducklake_snapshots('warehouse')").fetchall()) == count


def test_nothing_published_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no published snapshot"):
        snapshots.rewrite(tmp_path / "published", erase)
