{#-
  The 24-hour SOFA as it was known at each hour (docs/COHORT.md): mimic-code's hourly SOFA (int_sofa_hourly)
  from the rows stored by the end of the hour only. Each component is its worst points over the evidence
  counting at that hour (int_sofa_evidence), 0 when none, as mimic-code counts a missing component. Never
  above int_sofa_hourly's score of the same hour; equal where every row was stored within its hour. For the
  stays with a suspected infection, hours from 0 (the first whole hour of the stay) on.
-#}
with spans as (
    select *, {{ dbt.datediff('counts_from', 'counts_until', 'hour') }} as span_hours
    from {{ ref('int_sofa_evidence') }}
),
evidence_hours as (
    -- a row counting for a day or less (all but long infusions) on each of its hours: joined to 24 offsets,
    -- a small table every engine broadcasts; a longer infusion on the stay's hourly grid
    select
        e.stay_id,
        {{ dbt.dateadd('hour', 'o.hour_offset', 'e.counts_from') }} as endtime,
        e.component,
        e.points
    from spans as e
    inner join {{ ref('int_hour_offsets') }} as o on o.hour_offset < 24 and o.hour_offset <= e.span_hours
    where e.span_hours < 24
    union all
    select e.stay_id, h.endtime, e.component, e.points
    from spans as e
    inner join {{ ref('int_icustay_hourly') }} as h
        on h.stay_id = e.stay_id and h.endtime >= e.counts_from and h.endtime <= e.counts_until
    where e.span_hours >= 24
),
per_hour as (
    select
        stay_id,
        endtime,
        {%- for c in ['respiration', 'coagulation', 'liver', 'cardiovascular', 'cns', 'renal'] %}
        max(case when component = '{{ c }}' then points end) as {{ c }}{{ ',' if not loop.last }}
        {%- endfor %}
    from evidence_hours
    group by stay_id, endtime
),
scored as (
    select
        h.stay_id,
        h.hr,
        h.endtime,
        {%- for c in ['respiration', 'coagulation', 'liver', 'cardiovascular', 'cns', 'renal'] %}
        coalesce(p.{{ c }}, 0) as {{ c }}_24hours{{ ',' if not loop.last }}
        {%- endfor %}
    from {{ ref('int_icustay_hourly') }} as h
    left join per_hour as p on p.stay_id = h.stay_id and p.endtime = h.endtime
    where h.hr >= 0
      and h.stay_id in (select distinct stay_id from {{ ref('int_sofa_evidence') }})
)
select
    *,
    respiration_24hours + coagulation_24hours + liver_24hours + cardiovascular_24hours + cns_24hours
        + renal_24hours as sofa_24hours
from scored
