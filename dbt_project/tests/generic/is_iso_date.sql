{#- Values that are not a date written YYYY-MM-DD (a text column, as seeds keep dates people type). -#}
{% test is_iso_date(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and ({{ dbt.safe_cast(column_name, "date") }} is null or length({{ column_name }}) <> 10)
{% endtest %}
