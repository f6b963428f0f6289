{#-
  The MEDS dataset's metadata/codes.parquet: every code of meds_events once, with a description where the
  project knows one (its panel features' items, the task's trigger, MEDS' own codes). parent_codes is
  empty: the project maps no code to an ontology.
-#}
{{ config(materialized='view', tags=['meds'], enabled=(target.type == 'duckdb')) }}

with

codes as (
    select distinct code from {{ ref('meds_events') }}
),

items as (
    select
        case when i.source_table = 'labevents' then 'LAB//' else 'CHART//' end
            || cast(i.itemid as varchar) || '//' as code_prefix,
        f.description || ' (' || f.unit || ')' as description
    from {{ ref('panel_feature_items') }} as i
    inner join {{ ref('panel_features') }} as f on f.feature = i.feature
    where i.source_table in ('labevents', 'chartevents')
),

described as (
    select
        c.code,
        coalesce(
            min(i.description),
            case
                when c.code = 'SEPSIS3_RECOGNISED' then
                    'Sepsis-3 first known from stored rows (cohort recognition_time); T = this + '
                    || '{{ var("prediction_hours") }} h'
                when c.code = 'MEDS_DEATH' then 'Death (hospital deathtime, else date of death)'
                when c.code = 'MEDS_BIRTH' then 'Birth (1 January of anchor_year - anchor_age)'
                when c.code = 'NOTE//RADIOLOGY' then 'Radiology report; the text in text_value'
            end
        ) as description
    from codes as c
    left join items as i on starts_with(c.code, i.code_prefix)
    group by c.code
)

select code, description, cast([] as varchar[]) as parent_codes
from described
