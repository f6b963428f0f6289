{#-
  The lab and vital panel (seeds/panel_features.csv, docs/WINDOWS.md) in long format: one row per measurement, with the time it was
  true (charttime) and the time it existed in the record (available_at). Which items make a feature and
  each feature's valid range live in seeds/panel_feature_items.csv and seeds/panel_features.csv only.

  - available_at is storetime when present, else charttime (a lab result exists from its storetime),
    and never before charttime (a storetime before the charttime is a recording error).
  - Only valuenum is read: text results ('<0.5', 'ERROR', '___') have no valuenum and drop out.
  - Values outside their feature's valid range (charting errors: a heart rate of 0 or 10x) drop out.
  - Exact duplicates (same stay, feature, times and value) are kept once.
-#}
{{ config(materialized='table') }}

with

features as (
    select * from {{ ref('panel_features') }}
),

items as (
    select * from {{ ref('panel_feature_items') }}
),

stays as (
    select stay_id, subject_id, history_start, ends_at from {{ ref('int_stay_history') }}
),

-- Labs belong to the patient, not the stay (hadm_id may be NULL): a result attaches to every ICU stay
-- of its patient whose [history_start, ends_at] holds its charttime: ward labs of the hospital
-- admission before the ICU count (int_stay_history).
labs as (
    select
        s.stay_id,
        s.subject_id,
        i.feature,
        (l.valuenum + i.value_offset) * i.value_factor as value,
        l.charttime,
        {{ available_at('l.charttime', 'l.storetime') }} as available_at
    from {{ ref('stg_hosp_labevents') }} as l
    inner join items as i
        on i.source_table = 'labevents' and i.itemid = l.itemid
    inner join stays as s
        on s.subject_id = l.subject_id
        and l.charttime >= s.history_start
        and l.charttime <= s.ends_at
    where l.valuenum is not null
),

chart_items as (
    select
        c.stay_id,
        c.subject_id,
        c.itemid,
        i.feature,
        (c.valuenum + i.value_offset) * i.value_factor as value,
        c.charttime,
        {{ available_at('c.charttime', 'c.storetime') }} as available_at
    from {{ ref('stg_icu_chartevents') }} as c
    inner join items as i
        on i.source_table = 'chartevents' and i.itemid = c.itemid
    where c.valuenum is not null and c.stay_id is not null
),

-- GCS total: eye + verbal + motor charted at the same time (all three needed); it exists once the last
-- of them is stored. 'No Response-ETT' keeps MIMIC-IV's valuenum (1).
gcs_components as (
    select stay_id, subject_id, charttime, itemid, max(value) as value, max(available_at) as available_at
    from chart_items
    where feature = 'gcs'
    group by stay_id, subject_id, charttime, itemid
),

gcs as (
    select
        stay_id,
        subject_id,
        'gcs' as feature,
        sum(value) as value,
        charttime,
        max(available_at) as available_at
    from gcs_components
    group by stay_id, subject_id, charttime
    having count(*) = (select count(*) from items where feature = 'gcs')
),

-- Urine output as mimic-code's urine_output: the items summed per charting time, GU irrigant in negative.
urine as (
    select
        o.stay_id,
        o.subject_id,
        i.feature,
        sum(o.volume_ml * i.value_factor) as value,
        o.charttime,
        max({{ available_at('o.charttime', 'o.storetime') }}) as available_at
    from {{ ref('stg_icu_outputevents') }} as o
    inner join items as i
        on i.source_table = 'outputevents' and i.itemid = o.itemid
    where o.volume_ml is not null and o.stay_id is not null
    group by o.stay_id, o.subject_id, i.feature, o.charttime
),

-- Vasopressor infusions as norepinephrine-equivalent dose (mcg/kg/min), as mimic-code's
-- norepinephrine_equivalent_dose (after Goradia et al., J Crit Care 2021): norepinephrine + epinephrine
-- + phenylephrine / 10 + dopamine / 100 + vasopressin (units/min) * 2.5 (mimic-code issue #1279: its
-- vasopressin is in units/hour, hence its * 2.5 / 60); the factors are value_factor in the items seed.
-- Rates are brought to mcg/kg/min (units/min for vasopressin) first, as mimic-code's per-drug queries do.
vaso_rows as (
    select
        e.stay_id,
        e.subject_id,
        i.feature,
        e.starttime,
        e.endtime,
        {{ available_at('e.starttime', 'e.storetime') }} as stored_at,
        i.value_factor * case
            when e.rateuom = 'mcg/kg/min' then e.rate
            -- mimic-code: the few mg/kg/min rows with weight 1 are mcg/kg/min charted in the wrong unit
            when e.rateuom = 'mg/kg/min' and e.patientweight = 1 then e.rate
            when e.rateuom = 'mg/kg/min' then e.rate * 1000
            when e.rateuom = 'mcg/min' then e.rate / nullif(e.patientweight, 0)
            when e.rateuom = 'units/min' then e.rate
            when e.rateuom = 'units/hour' then e.rate / 60
        end as dose
    from {{ ref('stg_icu_inputevents') }} as e
    inner join items as i
        on i.source_table = 'inputevents' and i.itemid = e.itemid
    where e.rate is not null and e.stay_id is not null and e.endtime > e.starttime
),

-- A row with an impossible dose is a charting error: dropped before the doses are summed.
vaso_valid as (
    select v.*
    from vaso_rows as v
    inner join features as f on f.feature = v.feature
    where {{ panel_value_is_valid('v.dose', 'f') }}
),

-- The total dose changes only where an infusion starts or ends: one value per change point, the sum of
-- the infusions running then (0 once the last one stops). It exists once every row spanning the point
-- is stored (rows charted after the fact count from their storetime).
vaso_change_points as (
    select stay_id, subject_id, feature, starttime as t from vaso_valid
    union
    select stay_id, subject_id, feature, endtime as t from vaso_valid
),

vaso as (
    select
        p.stay_id,
        p.subject_id,
        p.feature,
        sum(case when v.starttime <= p.t and p.t < v.endtime then v.dose else 0 end) as value,
        p.t as charttime,
        max(case when v.stored_at > p.t then v.stored_at else p.t end) as available_at
    from vaso_change_points as p
    inner join vaso_valid as v
        on v.stay_id = p.stay_id
        and v.starttime <= p.t
        and v.endtime >= p.t
    group by p.stay_id, p.subject_id, p.feature, p.t
),

measurements as (
    select stay_id, subject_id, feature, value, charttime, available_at from labs
    union all
    select stay_id, subject_id, feature, value, charttime, available_at from chart_items where feature <> 'gcs'
    union all
    select stay_id, subject_id, feature, value, charttime, available_at from gcs
    union all
    select stay_id, subject_id, feature, value, charttime, available_at from urine
    union all
    select stay_id, subject_id, feature, value, charttime, available_at from vaso
)

select distinct
    m.stay_id,
    m.subject_id,
    m.feature,
    cast(m.value as double) as value,
    m.charttime,
    m.available_at
from measurements as m
inner join features as f on f.feature = m.feature
where {{ panel_value_is_valid('m.value', 'f') }}
