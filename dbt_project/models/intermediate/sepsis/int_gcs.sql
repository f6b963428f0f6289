-- Glasgow Coma Scale per charted time (mimic-code gcs): a missing component is carried from the
-- previous charting within 6 h, else taken as normal; an intubated patient (verbal 'No Response-ETT')
-- counts as 15, since the scale cannot be assessed. available_at: when the last row it reads was stored.
with base as (
    select
        subject_id,
        stay_id,
        charttime,
        max(case when itemid = 223901 then valuenum end) as motor,
        max(case when itemid = 223900 and value_text = 'No Response-ETT' then 0
                 when itemid = 223900 then valuenum end) as verbal,
        max(case when itemid = 220739 then valuenum end) as eyes,
        max(case when itemid = 223900 and value_text = 'No Response-ETT' then 1 else 0 end) as unable,
        max({{ available_at('charttime', 'storetime') }}) as available_at,
        row_number() over (partition by stay_id order by charttime nulls last) as rn
    from {{ ref('stg_icu_chartevents') }}
    where itemid in (223900, 223901, 220739)
    group by subject_id, stay_id, charttime
)
select
    b.subject_id,
    b.stay_id,
    b.charttime,
    case
        when b.verbal = 0 then 15
        when b.verbal is null and p.verbal = 0 then 15
        when p.verbal = 0 then coalesce(b.motor, 6) + coalesce(b.verbal, 5) + coalesce(b.eyes, 4)
        else coalesce(b.motor, p.motor, 6) + coalesce(b.verbal, p.verbal, 5) + coalesce(b.eyes, p.eyes, 4)
    end as gcs,
    b.unable as gcs_unable,
    case when p.available_at > b.available_at then p.available_at else b.available_at end as available_at
from base as b
left join base as p
    on p.stay_id = b.stay_id and b.rn = p.rn + 1 and p.charttime > {{ dbt.dateadd('hour', -6, 'b.charttime') }}
