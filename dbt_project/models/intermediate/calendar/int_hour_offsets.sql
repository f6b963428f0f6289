{#- The integers 0 .. 2^17 - 1 (15 years in hours, more than any ICU stay), as `hour_offset`: the hourly
    grids (int_icustay_hourly, int_window_ends, sequence_steps) join to it with an inequality, the same
    SQL on every engine (DuckDB's generate_series and Spark's sequence differ). -#}
{{ config(materialized='table') }}

select cast(generated_number as integer) - 1 as hour_offset
from ({{ dbt.generate_series(131072) }}) as series
