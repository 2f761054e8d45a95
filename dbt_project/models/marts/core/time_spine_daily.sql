{#- One row per day; the time spine for metrics and for date × tenant grids. -#}
{{ config(materialized='table') }}

select cast(date_day as date) as date_day
from ({{ days_between("'2020-01-01'", "'2030-12-31'") }}) as spine
