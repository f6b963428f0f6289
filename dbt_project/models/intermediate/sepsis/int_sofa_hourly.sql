-- Hourly SOFA per ICU stay (mimic-code sofa): each component's worst value within the hour
-- (endtime - 1 h, endtime], then its worst over the last 24 hours (missing counts as 0), and their sum.
with hours as (
    select
        h.stay_id,
        ie.subject_id,
        ie.hadm_id,
        h.hr,
        {{ dbt.dateadd('hour', -1, 'h.endtime') }} as starttime,
        h.endtime
    from {{ ref('int_icustay_hourly') }} as h
    inner join {{ ref('stg_icu_icustays') }} as ie on ie.stay_id = h.stay_id
),
pafi as (
    -- arterial gases of the patient, split by whether the stay was invasively ventilated then
    select
        ie.stay_id,
        bg.charttime,
        case when v.stay_id is null then bg.pao2fio2ratio end as pao2fio2ratio_novent,
        case when v.stay_id is not null then bg.pao2fio2ratio end as pao2fio2ratio_vent
    from {{ ref('stg_icu_icustays') }} as ie
    inner join {{ ref('int_blood_gas') }} as bg on bg.subject_id = ie.subject_id
    left join {{ ref('int_ventilation') }} as v
        on v.stay_id = ie.stay_id and bg.charttime >= v.starttime and bg.charttime <= v.endtime
        and v.ventilation_status = 'InvasiveVent'
    where bg.specimen = 'ART.'
),
{%- set per_hour = [
    ('mbp', 'int_mean_bp', 'stay_id', 'min(x.mbp) as meanbp_min'),
    ('gcs', 'int_gcs', 'stay_id', 'min(x.gcs) as gcs_min'),
    ('labs', 'int_sofa_labs', 'hadm_id', 'max(x.bilirubin_total) as bilirubin_max, max(x.creatinine) as creatinine_max, min(x.platelet) as platelet_min'),
    ('uo', 'int_urine_output_rate', 'stay_id', 'max(case when x.uo_tm_24hr >= 22 and x.uo_tm_24hr <= 30 then x.urineoutput_24hr / x.uo_tm_24hr * 24 end) as uo_24hr'),
] %}
{% for name, relation, key, aggregate in per_hour %}
{{ name }} as (
    select h.stay_id, h.hr, {{ aggregate }}
    from hours as h
    left join {{ ref(relation) }} as x
        on x.{{ key }} = h.{{ key }} and x.charttime > h.starttime and x.charttime <= h.endtime
    group by h.stay_id, h.hr
),
{% endfor %}
pf as (
    select h.stay_id, h.hr, min(p.pao2fio2ratio_novent) as pao2fio2ratio_novent,
           min(p.pao2fio2ratio_vent) as pao2fio2ratio_vent
    from hours as h
    left join pafi as p on p.stay_id = h.stay_id and p.charttime > h.starttime and p.charttime <= h.endtime
    group by h.stay_id, h.hr
),
vaso as (
    -- infusions running at the end of the hour
    select
        h.stay_id,
        h.hr,
        max(case when v.drug = 'epinephrine' then v.vaso_rate end) as rate_epinephrine,
        max(case when v.drug = 'norepinephrine' then v.vaso_rate end) as rate_norepinephrine,
        max(case when v.drug = 'dopamine' then v.vaso_rate end) as rate_dopamine,
        max(case when v.drug = 'dobutamine' then v.vaso_rate end) as rate_dobutamine
    from hours as h
    inner join {{ ref('int_vasopressors') }} as v
        on v.stay_id = h.stay_id and h.endtime > v.starttime and h.endtime <= v.endtime
    group by h.stay_id, h.hr
),
components as (
    select
        h.stay_id, h.hr, h.starttime, h.endtime,
        pf.pao2fio2ratio_novent, pf.pao2fio2ratio_vent,
        vaso.rate_epinephrine, vaso.rate_norepinephrine, vaso.rate_dopamine, vaso.rate_dobutamine,
        mbp.meanbp_min, gcs.gcs_min, uo.uo_24hr, labs.bilirubin_max, labs.creatinine_max, labs.platelet_min,
        case when pf.pao2fio2ratio_vent < 100 then 4
             when pf.pao2fio2ratio_vent < 200 then 3
             when pf.pao2fio2ratio_novent < 300 then 2
             when pf.pao2fio2ratio_vent < 300 then 2
             when pf.pao2fio2ratio_novent < 400 then 1
             when pf.pao2fio2ratio_vent < 400 then 1
             when coalesce(pf.pao2fio2ratio_vent, pf.pao2fio2ratio_novent) is null then null
             else 0 end as respiration,
        case when labs.platelet_min < 20 then 4 when labs.platelet_min < 50 then 3
             when labs.platelet_min < 100 then 2 when labs.platelet_min < 150 then 1
             when labs.platelet_min is null then null else 0 end as coagulation,
        case when labs.bilirubin_max >= 12.0 then 4 when labs.bilirubin_max >= 6.0 then 3
             when labs.bilirubin_max >= 2.0 then 2 when labs.bilirubin_max >= 1.2 then 1
             when labs.bilirubin_max is null then null else 0 end as liver,
        -- any epinephrine or norepinephrine at all scores at least 3, as in mimic-code
        case when vaso.rate_dopamine > 15 or vaso.rate_epinephrine > 0.1 or vaso.rate_norepinephrine > 0.1 then 4
             when vaso.rate_dopamine > 5 or vaso.rate_epinephrine <= 0.1 or vaso.rate_norepinephrine <= 0.1 then 3
             when vaso.rate_dopamine > 0 or vaso.rate_dobutamine > 0 then 2
             when mbp.meanbp_min < 70 then 1
             when coalesce(mbp.meanbp_min, vaso.rate_dopamine, vaso.rate_dobutamine, vaso.rate_epinephrine,
                           vaso.rate_norepinephrine) is null then null
             else 0 end as cardiovascular,
        case when gcs.gcs_min >= 13 and gcs.gcs_min <= 14 then 1 when gcs.gcs_min >= 10 and gcs.gcs_min <= 12 then 2
             when gcs.gcs_min >= 6 and gcs.gcs_min <= 9 then 3 when gcs.gcs_min < 6 then 4
             when gcs.gcs_min is null then null else 0 end as cns,
        case when labs.creatinine_max >= 5.0 then 4 when uo.uo_24hr < 200 then 4
             when labs.creatinine_max >= 3.5 and labs.creatinine_max < 5.0 then 3 when uo.uo_24hr < 500 then 3
             when labs.creatinine_max >= 2.0 and labs.creatinine_max < 3.5 then 2
             when labs.creatinine_max >= 1.2 and labs.creatinine_max < 2.0 then 1
             when coalesce(uo.uo_24hr, labs.creatinine_max) is null then null else 0 end as renal
    from hours as h
    left join pf on pf.stay_id = h.stay_id and pf.hr = h.hr
    left join vaso on vaso.stay_id = h.stay_id and vaso.hr = h.hr
    left join mbp on mbp.stay_id = h.stay_id and mbp.hr = h.hr
    left join gcs on gcs.stay_id = h.stay_id and gcs.hr = h.hr
    left join uo on uo.stay_id = h.stay_id and uo.hr = h.hr
    left join labs on labs.stay_id = h.stay_id and labs.hr = h.hr
),
rolling as (
    select
        *,
        {%- for c in ['respiration', 'coagulation', 'liver', 'cardiovascular', 'cns', 'renal'] %}
        coalesce(max({{ c }}) over last_24h, 0) as {{ c }}_24hours{{ ',' if not loop.last }}
        {%- endfor %}
    from components
    window last_24h as (partition by stay_id order by hr rows between 23 preceding and current row)
)
select
    *,
    respiration_24hours + coagulation_24hours + liver_24hours + cardiovascular_24hours + cns_24hours
        + renal_24hours as sofa_24hours
from rolling
where hr >= 0
