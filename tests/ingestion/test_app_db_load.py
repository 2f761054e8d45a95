"""The app database: incremental on updated_at, merged on keys, schema contract on purpose."""

from __future__ import annotations

import sqlite3
from datetime import datetime, time, timedelta

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from ingestion import pipelines
from ingestion.sample_data.app_db import PRIMARY_KEYS, mutate_app_db
from tests.conftest import SAMPLE_END
from tests.ingestion.helpers import load, query, scalar

# When the tests change the app's rows: after every row the sample wrote (two weeks after its last day).
LATER = datetime.combine(SAMPLE_END, time(12)) + timedelta(days=15)


def _source_counts(layout) -> dict[str, int]:
    with sqlite3.connect(layout.app_db) as conn:
        return {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in PRIMARY_KEYS}


def test_first_load_copies_every_table(sample):
    written = load(sample, pipelines.APP_DB)
    assert written == _source_counts(sample)
    for table, key in PRIMARY_KEYS.items():
        assert scalar(sample, f"select count(*) - count(distinct {key}) from raw_app.{table}") == 0


def test_second_load_takes_only_changed_rows_and_updates_in_place(sample):
    load(sample, pipelines.APP_DB)
    changed = mutate_app_db(sample.app_db, at=LATER)
    written = load(sample, pipelines.APP_DB)
    assert written == changed
    counts = _source_counts(sample)
    for table, key in PRIMARY_KEYS.items():
        assert scalar(sample, f"select count(*) from raw_app.{table}") == counts[table]
        assert scalar(sample, f"select count(*) - count(distinct {key}) from raw_app.{table}") == 0
    refunded_now = scalar(sample, "select count(*) from raw_app.orders where status = 'refunded' "
                                  f"and updated_at = timestamp '{LATER}'")
    assert refunded_now == changed["orders"] - 1
    assert load(sample, pipelines.APP_DB) == {}  # nothing changed since: nothing loaded


def _add_column(layout, stamp: str) -> None:
    with sqlite3.connect(layout.app_db) as conn:
        conn.execute("alter table users add column referral_code text")
        conn.execute("update users set referral_code = 'R' || user_id, updated_at = ? "
                     "where user_id in (select user_id from users order by user_id limit 3)", (stamp,))


def test_new_column_evolves_the_raw_table(sample):
    load(sample, pipelines.APP_DB)
    _add_column(sample, str(LATER))
    assert load(sample, pipelines.APP_DB, contract="evolve") == {"users": 3}
    columns = {r[0] for r in query(sample, "select column_name from information_schema.columns "
                                           "where table_schema = 'raw_app' and table_name = 'users'")}
    assert "referral_code" in columns
    assert scalar(sample, "select count(referral_code) from raw_app.users") == 3


def test_new_column_is_refused_under_freeze_and_nothing_is_lost(sample):
    load(sample, pipelines.APP_DB)
    users_before = query(sample, "select * from raw_app.users order by user_id")
    _add_column(sample, str(LATER))
    with pytest.raises(PipelineStepFailed) as failure:
        load(sample, pipelines.APP_DB, contract="freeze")
    message = str(failure.value)
    assert "users" in message and "referral_code" in message and "freeze" in message
    assert query(sample, "select * from raw_app.users order by user_id") == users_before


def test_changed_type_is_refused_with_the_column_and_both_types(sample):
    """A column whose type changes (price: numeric -> text) never lands as a variant column."""
    load(sample, pipelines.APP_DB)
    products_before = query(sample, "select * from raw_app.products order by product_id")
    with sqlite3.connect(sample.app_db) as conn:
        conn.executescript(f"""
            create table products_new (product_id text primary key, tenant_id text not null, name text,
                category text, price text not null, created_at datetime not null, updated_at datetime not null);
            insert into products_new
                select product_id, tenant_id, name, category, 'USD ' || price, created_at, '{LATER}'
                from products;
            drop table products;
            alter table products_new rename to products;
        """)
    with pytest.raises(PipelineStepFailed) as failure:
        load(sample, pipelines.APP_DB)
    message = str(failure.value)
    assert "`products`" in message and "`price`" in message and "'decimal'" in message and "'text'" in message
    assert query(sample, "select * from raw_app.products order by product_id") == products_before
