"""Raw app-database tables (`raw_app.*`): the columns the models need, and amounts that make sense.

A column dropped upstream loads without complaint (dlt keeps what it receives), and an order with
a negative total is a valid row to every key test; both would skew every revenue figure.
"""

from __future__ import annotations

from expectations.spec import Check, Frame, Quarantine, Severity, Suite

# What the staging models read from each table: a source that stops sending one must stop the run.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "tenants": ("tenant_id", "name", "industry", "country", "tier", "created_at", "updated_at"),
    "users": ("user_id", "tenant_id", "email_domain", "signup_at", "plan", "country", "device",
              "acquisition_channel", "updated_at"),
    "products": ("product_id", "tenant_id", "name", "category", "price", "created_at", "updated_at"),
    "orders": ("order_id", "tenant_id", "user_id", "status", "currency", "total_amount", "created_at", "updated_at"),
    "order_items": ("order_item_id", "order_id", "product_id", "quantity", "unit_price", "updated_at"),
    "subscriptions": ("subscription_id", "tenant_id", "user_id", "plan", "mrr", "status", "started_at",
                      "cancelled_at", "updated_at"),
    "subscription_events": ("subscription_event_id", "subscription_id", "event_type", "plan", "mrr",
                            "effective_at", "updated_at"),
}
ORDER_STATUSES = ["completed", "refunded", "cancelled"]

ORDERS = """
select order_id, tenant_id, status, cast(total_amount as double) as total_amount
from raw_app.orders
order by order_id
"""

SUITE = Suite(
    name="raw_app",
    description=__doc__.split("\n\n")[0],
    frames=(
        *(Frame(f"{table}_columns", f"select * from raw_app.{table} limit 0") for table in REQUIRED_COLUMNS),
        Frame("orders", ORDERS, label=("order_id", "tenant_id")),
    ),
    checks=(
        *(Check(f"{table}_has_required_columns", ("raw_app", table), f"{table}_columns",
                "expect_table_columns_to_match_set", {"column_set": list(columns), "exact_match": False},
                Severity.CRITICAL, f"raw_app.{table} still has every column its staging model reads.")
          for table, columns in REQUIRED_COLUMNS.items()),
        Check("order_totals_non_negative", ("raw_app", "orders"), "orders", "expect_column_values_to_be_between",
              {"column": "total_amount", "min_value": 0}, Severity.CRITICAL,
              "No order has a negative total; refunds are a status, not a negative amount.",
              Quarantine("raw_app.orders", "order_id")),
        Check("order_statuses_known", ("raw_app", "orders"), "orders", "expect_column_values_to_be_in_set",
              {"column": "status", "value_set": ORDER_STATUSES}, Severity.WARNING,
              f"Order statuses are one of {', '.join(ORDER_STATUSES)}."),
    ),
)
