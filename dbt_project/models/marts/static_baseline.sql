{{ config(materialized='external', location=var('feature_dir') ~ '/static_baseline.parquet') }}
-- Static baseline per cohort stay, as known at its prediction time T (event_timestamp = T):
-- demographics and admission, body size, comorbidities from EARLIER admissions only (diagnoses are coded
-- at discharge), prior use of care, the SOFA components of the hour that made Sepsis-3 known (the
-- stored-only SOFA of the first-recognised pair's hour: known by then, int_sepsis3_recognition), and vitals
-- of the first ICU hours.
{% set components = charlson_components() %}
{% set first_hours = 6 %}
{% set first_hours_vitals = [('heart_rate', 'avg'), ('map', 'avg'), ('resp_rate', 'avg'), ('temperature', 'avg'),
                             ('spo2', 'avg'), ('gcs', 'min')] %}
with cohort as (
    select c.*, a.admittime, a.admission_type, a.admission_location, a.insurance, a.race, p.gender,
           ie.first_careunit
    from {{ ref('cohort') }} as c
    inner join {{ ref('stg_hosp_admissions') }} as a on a.hadm_id = c.hadm_id
    inner join {{ ref('stg_hosp_patients') }} as p on p.subject_id = c.subject_id
    inner join {{ ref('stg_icu_icustays') }} as ie on ie.stay_id = c.stay_id
),
history as (
    -- admissions that ended before this one began: their codes were known at T
    select
        c.stay_id,
        count(h.hadm_id) as prior_admissions,
        count(h.hadm_id) filter (where h.admittime >= {{ dbt.dateadd('day', -365, 'c.admittime') }}) as prior_admissions_1y,
        {%- for comp in components %}
        coalesce(max(h.{{ comp }}), 0) as {{ comp }}{{ ',' if not loop.last }}
        {%- endfor %}
    from cohort as c
    left join {{ ref('int_charlson_by_admission') }} as h
        on h.subject_id = c.subject_id and h.dischtime <= c.admittime
    group by c.stay_id
),
prior_icu as (
    select c.stay_id, count(ie.stay_id) as prior_icu_stays
    from cohort as c
    left join {{ ref('stg_icu_icustays') }} as ie on ie.subject_id = c.subject_id and ie.outtime <= c.intime
    group by c.stay_id
),
body_chart as (
    -- latest charted weight and height available by T
    select
        c.stay_id,
        {{ arg_max('ce.valuenum', 'ce.charttime') }} filter (where ce.itemid in (226512, 224639)) as weight_kg,
        {{ arg_max('case when ce.itemid = 226707 then ce.valuenum * 2.54 else ce.valuenum end', 'ce.charttime') }}
            filter (where ce.itemid in (226730, 226707)) as height_cm
    from cohort as c
    inner join {{ ref('stg_icu_chartevents') }} as ce
        on ce.subject_id = c.subject_id and ce.stay_id = c.stay_id
        and {{ available_at('ce.charttime', 'ce.storetime') }} <= c.prediction_time
        and ce.itemid in (226512, 224639, 226730, 226707)
        and ((ce.itemid in (226512, 224639) and ce.valuenum between 20 and 400)
             or (ce.itemid = 226730 and ce.valuenum between 100 and 250)
             or (ce.itemid = 226707 and ce.valuenum between 40 and 100))
    group by c.stay_id
),
body_omr as (
    -- outpatient measurements dated before the admission (pounds and inches in OMR)
    select
        c.stay_id,
        {{ arg_max('o.result_number * 0.45359237', 'o.chartdate') }}
            filter (where o.result_name = 'Weight (Lbs)') as weight_kg,
        {{ arg_max('o.result_number * 2.54', 'o.chartdate') }}
            filter (where o.result_name = 'Height (Inches)') as height_cm
    from cohort as c
    inner join {{ ref('stg_hosp_omr') }} as o
        on o.subject_id = c.subject_id and o.chartdate < cast(c.admittime as date)
    group by c.stay_id
),
vitals as (
    select
        c.stay_id,
        {%- for feature, agg in first_hours_vitals %}
        {{ agg }}(m.value) filter (where m.feature = '{{ feature }}') as first_{{ first_hours }}h_{{ feature }}{{ ',' if not loop.last }}
        {%- endfor %}
    from cohort as c
    inner join {{ ref('int_panel_measurements') }} as m
        on m.stay_id = c.stay_id
        and m.charttime >= c.intime and m.charttime < {{ dbt.dateadd('hour', first_hours, 'c.intime') }}
        and m.available_at <= c.prediction_time
    group by c.stay_id
)
select
    cast(c.stay_id as {{ dbt.type_bigint() }}) as stay_id,
    c.prediction_time as event_timestamp,
    c.prediction_time as created_timestamp,
    c.age,
    cast(c.gender = 'F' as integer) as female,
    c.admission_type,
    c.admission_location,
    c.insurance,
    c.race,
    c.first_careunit,
    cast({{ dbt.datediff('c.admittime', 'c.intime', 'minute') }} as double) / 60 as hours_admission_to_icu,
    cast({{ dbt.datediff('c.intime', 'greatest(s.sofa_time, c.intime)', 'minute') }} as double) / 60 as hours_icu_to_onset,
    coalesce(bc.weight_kg, bo.weight_kg) as weight_kg,
    coalesce(bc.height_cm, bo.height_cm) as height_cm,
    coalesce(bc.weight_kg, bo.weight_kg) / power(coalesce(bc.height_cm, bo.height_cm) / 100, 2) as bmi,
    h.prior_admissions,
    h.prior_admissions_1y,
    pi.prior_icu_stays,
    {%- for comp in components %}
    h.{{ comp }},
    {%- endfor %}
    -- Charlson index from earlier admissions, with mimic-code's weights and age score
    case when c.age < 50 then 0 when c.age < 60 then 1 when c.age < 70 then 2 when c.age < 80 then 3 else 4 end
        + h.myocardial_infarct + h.congestive_heart_failure + h.peripheral_vascular_disease
        + h.cerebrovascular_disease + h.dementia + h.chronic_pulmonary_disease + h.rheumatic_disease
        + h.peptic_ulcer_disease + greatest(h.mild_liver_disease, 3 * h.severe_liver_disease)
        + greatest(2 * h.diabetes_with_cc, h.diabetes_without_cc)
        + greatest(2 * h.malignant_cancer, 6 * h.metastatic_solid_tumor)
        + 2 * h.paraplegia + 2 * h.renal_disease + 6 * h.aids as charlson_comorbidity_index,
    s.sofa_score as sofa_at_onset,
    s.respiration as sofa_respiration_at_onset,
    s.coagulation as sofa_coagulation_at_onset,
    s.liver as sofa_liver_at_onset,
    s.cardiovascular as sofa_cardiovascular_at_onset,
    s.cns as sofa_cns_at_onset,
    s.renal as sofa_renal_at_onset,
    {%- for feature, agg in first_hours_vitals %}
    v.first_{{ first_hours }}h_{{ feature }}{{ "," if not loop.last }}
    {%- endfor %}
from cohort as c
inner join history as h on h.stay_id = c.stay_id
inner join prior_icu as pi on pi.stay_id = c.stay_id
inner join {{ ref('int_sepsis3_recognition') }} as s on s.stay_id = c.stay_id
left join body_chart as bc on bc.stay_id = c.stay_id
left join body_omr as bo on bo.stay_id = c.stay_id
left join vitals as v on v.stay_id = c.stay_id
