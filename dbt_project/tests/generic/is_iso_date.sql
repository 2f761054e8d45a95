{#- Values not written as a date YYYY-MM-DD (a text column, as seeds keep dates people type). SIMILAR TO
    (Spark: RLIKE, macros/cross_db.sql) matches the text, where a cast would fail the test instead of returning the
    row; whether the day exists (2026-02-30) is checked by ml/events.py, which names the line. -#}
{% test is_iso_date(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and not {{ looks_like_iso_date(column_name) }}
{% endtest %}
