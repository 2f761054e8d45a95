{#- Values not written as a date YYYY-MM-DD (a text column, as seeds keep dates people type). SIMILAR TO
    reads the same on DuckDB and PostgreSQL, where a cast would fail the test instead of returning the
    row; whether the day exists (2026-02-30) is checked by ml/events.py, which names the line. -#}
{% test is_iso_date(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and {{ column_name }} not similar to '[0-9]{4}-[0-9]{2}-[0-9]{2}'
{% endtest %}
