{#-
  windows_24h has, for every ICU stay, one row per whole hour after intime up to the last whole hour at
  or before outtime (for a stay still open in a live extract, the extract's time), and none outside that span. Returns the stays where the rows disagree.
-#}

with

expected as (
    select
        stay_id,
        {{ dbt.dateadd('hour', 1, dbt.date_trunc('hour', 'intime')) }} as first_end,
        {{ dbt.date_trunc('hour', 'ends_at') }} as last_end
    from {{ ref('int_icu_stay_spans') }}
),

expected_rows as (
    select
        stay_id,
        first_end,
        last_end,
        case when last_end >= first_end then {{ dbt.datediff('first_end', 'last_end', 'hour') }} + 1 else 0 end as n_expected
    from expected
),

actual as (
    select stay_id, count(*) as n_rows, min(event_timestamp) as first_row, max(event_timestamp) as last_row
    from {{ ref('windows_24h') }}
    group by stay_id
)

select e.stay_id, e.n_expected, a.n_rows, e.first_end, a.first_row, e.last_end, a.last_row
from expected_rows as e
full outer join actual as a on a.stay_id = e.stay_id
where coalesce(a.n_rows, 0) <> coalesce(e.n_expected, -1)
    or (a.n_rows > 0 and (a.first_row <> e.first_end or a.last_row <> e.last_end))
