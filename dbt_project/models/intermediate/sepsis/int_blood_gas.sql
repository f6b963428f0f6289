-- Blood gases per specimen with PaO2/FiO2 (mimic-code bg): FiO2 from the specimen (50816), else the
-- latest charted FiO2 (223835) in the 4 h before; specimens without a pO2 are left out. `specimen`
-- is the text of 52033 ('ART.' = arterial). available_at: when the last row the ratio reads was stored
-- (the specimen's rows, and the charted FiO2 where it stands in for the specimen's): for the stored-only
-- SOFA (int_sofa_evidence); mimic-code's columns are unchanged.
with bg as (
    select
        specimen_id,
        max(subject_id) as subject_id,
        max(hadm_id) as hadm_id,
        max(charttime) as charttime,
        max(case when itemid = 52033 then value_text end) as specimen,
        max(case when itemid = 50821 then valuenum end) as po2,
        max(case when itemid = 50818 then valuenum end) as pco2,
        max(case when itemid = 50816 then
                case when valuenum > 20 and valuenum <= 100 then valuenum
                     when valuenum > 0.2 and valuenum <= 1.0 then valuenum * 100.0 end
            end) as fio2,
        max(case when itemid = 50820 then valuenum end) as ph,
        max(case when itemid = 50813 and valuenum <= 10000 then valuenum end) as lactate,
        max({{ available_at('charttime', 'storetime') }}) as specimen_available_at
    from {{ ref('stg_hosp_labevents') }}
    where itemid in (52033, 50821, 50818, 50816, 50820, 50813)
    group by specimen_id
),
charted_fio2 as (
    select
        subject_id,
        charttime,
        max(case when valuenum > 0.2 and valuenum <= 1 then valuenum * 100
                 when valuenum >= 20 and valuenum <= 100 then valuenum end) as fio2_chartevents,
        max({{ available_at('charttime', 'storetime') }}) as fio2_available_at
    from {{ ref('stg_icu_chartevents') }}
    where itemid = 223835 and valuenum > 0 and valuenum <= 100
    group by subject_id, charttime
),
with_fio2 as (
    select
        bg.*,
        f.fio2_chartevents,
        f.fio2_available_at,
        row_number() over (partition by bg.specimen_id order by f.charttime desc nulls last) as rn
    from bg
    left join charted_fio2 as f
        on f.subject_id = bg.subject_id
        and f.charttime >= {{ dbt.dateadd('hour', -4, 'bg.charttime') }}
        and f.charttime <= bg.charttime
        and f.fio2_chartevents > 0
    where bg.po2 is not null
)
select
    specimen_id,
    subject_id,
    hadm_id,
    charttime,
    specimen,
    po2,
    pco2,
    fio2,
    fio2_chartevents,
    case when fio2 is not null then 100 * po2 / fio2
         when fio2_chartevents is not null then 100 * po2 / fio2_chartevents end as pao2fio2ratio,
    ph,
    lactate,
    case when fio2 is null and fio2_chartevents is not null and fio2_available_at > specimen_available_at
         then fio2_available_at else specimen_available_at end as available_at
from with_fio2
where rn = 1
