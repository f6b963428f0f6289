{#-
  The evidence of the stored-only SOFA (int_sofa_hourly_stored, docs/COHORT.md): every row that gives a SOFA
  component points, with the hours it counts for. mimic-code's hourly SOFA scores each component from the
  rows charted in an hour and keeps its worst over the last 24 hours; as known at an hour, only the rows
  stored by that hour's end count. So a row counts on the hours (ending) from the first one after both its
  charttime and its storage (available_at), to 23 hours after its last charted hour. An infusion counts on
  every hour whose end it runs over (start < end of hour <= its end), as in mimic-code: none when it starts and
  stops within one hour.

  Points per row are mimic-code's thresholds; the worst over rows equals mimic-code's score of the hour's
  worst value for every component but urine output, whose hour value is the hour's largest 24-hour rate:
  it is taken per hour, known once every row of that hour is stored. Only stays with a suspected infection
  (the only ones a Sepsis-3 pair can form in) and rows with points are kept; rows with equal hours merge.
  Whether a blood gas was taken under invasive ventilation (which scores PaO2/FiO2 higher) is read from the
  last ventilation status charted in the 14 hours up to it (int_ventilation_status), known once stored.

  var sofa_known_at: 'storetime' (the default) as above; 'charttime' counts every row from its charted hour,
  whenever it was stored, and ventilation by mimic-code's episodes: then int_sofa_hourly_stored is mimic-code's
  retrospective hourly SOFA (tested).
-#}
-- depends_on: {{ ref('int_ventilation') }}, {{ ref('int_ventilation_status') }}
{%- set known_at = var('sofa_known_at') %}
{%- if known_at not in ('storetime', 'charttime') %}
{{ exceptions.raise_compiler_error("var sofa_known_at must be 'storetime' or 'charttime', not '" ~ known_at ~ "'") }}
{%- endif %}
with stays as (
    select ie.stay_id, ie.subject_id, ie.hadm_id
    from {{ ref('stg_icu_icustays') }} as ie
    where ie.stay_id in (
        select stay_id from {{ ref('int_suspicion_of_infection') }}
        where suspected_infection = 1 and stay_id is not null
    )
),
arterial_gases as (
    select * from {{ ref('int_blood_gas') }} where specimen = 'ART.' and pao2fio2ratio is not null
),
labs as (
    -- mimic-code joins the SOFA labs to the ICU hours by hadm_id
    select
        s.stay_id,
        case l.itemid when 51265 then 'coagulation' when 50885 then 'liver' else 'renal' end as component,
        case
            when l.itemid = 51265 then
                case when l.valuenum < 20 then 4 when l.valuenum < 50 then 3 when l.valuenum < 100 then 2
                     when l.valuenum < 150 then 1 else 0 end
            when l.itemid = 50885 then
                case when l.valuenum >= 12 then 4 when l.valuenum >= 6 then 3 when l.valuenum >= 2 then 2
                     when l.valuenum >= 1.2 then 1 else 0 end
            else
                case when l.valuenum >= 5 then 4 when l.valuenum >= 3.5 then 3 when l.valuenum >= 2 then 2
                     when l.valuenum >= 1.2 then 1 else 0 end
        end as points,
        {{ ceil_to_hour('l.charttime') }} as first_hour,
        {{ ceil_to_hour('l.charttime') }} as last_hour,
        {{ available_at('l.charttime', 'l.storetime') }} as available_at
    from {{ ref('stg_hosp_labevents') }} as l
    inner join stays as s on s.hadm_id = l.hadm_id
    where l.itemid in (50912, 51265, 50885) and l.valuenum > 0 and (l.itemid <> 50912 or l.valuenum <= 150)
),
respiration as (
    -- arterial gases of the patient, scored as not ventilated, and where the stay was invasively ventilated
    -- then, scored so too (the worst counts): by mimic-code's episodes (retrospective, their end reads later
    -- rows) with sofa_known_at: charttime; as known then otherwise, from the last status charted in the 14 h
    -- up to the gas, counting from when both were stored
    select
        s.stay_id,
        'respiration' as component,
        case when bg.pao2fio2ratio < 300 then 2 when bg.pao2fio2ratio < 400 then 1 else 0 end as points,
        {{ ceil_to_hour('bg.charttime') }} as first_hour,
        {{ ceil_to_hour('bg.charttime') }} as last_hour,
        bg.available_at
    from stays as s
    inner join arterial_gases as bg on bg.subject_id = s.subject_id
    union all
    select
        s.stay_id,
        'respiration' as component,
        case when bg.pao2fio2ratio < 100 then 4 when bg.pao2fio2ratio < 200 then 3
             when bg.pao2fio2ratio < 300 then 2 when bg.pao2fio2ratio < 400 then 1 else 0 end as points,
        {{ ceil_to_hour('bg.charttime') }} as first_hour,
        {{ ceil_to_hour('bg.charttime') }} as last_hour,
        {%- if known_at == 'storetime' %}
        case when v.available_at > bg.available_at then v.available_at else bg.available_at end as available_at
        {%- else %}
        bg.available_at
        {%- endif %}
    from stays as s
    inner join arterial_gases as bg on bg.subject_id = s.subject_id
    {%- if known_at == 'storetime' %}
    inner join (
        select
            s.stay_id,
            bg.specimen_id,
            vs.ventilation_status,
            vs.available_at,
            row_number() over (partition by s.stay_id, bg.specimen_id order by vs.charttime desc) as recency
        from stays as s
        inner join arterial_gases as bg on bg.subject_id = s.subject_id
        inner join {{ ref('int_ventilation_status') }} as vs
            on vs.stay_id = s.stay_id and vs.charttime <= bg.charttime
            and vs.charttime > {{ dbt.dateadd('hour', -14, 'bg.charttime') }}
    ) as v
        on v.stay_id = s.stay_id and v.specimen_id = bg.specimen_id and v.recency = 1
        and v.ventilation_status = 'InvasiveVent'
    {%- else %}
    inner join (
        select distinct s.stay_id, bg.specimen_id
        from stays as s
        inner join arterial_gases as bg on bg.subject_id = s.subject_id
        inner join {{ ref('int_ventilation') }} as e
            on e.stay_id = s.stay_id and bg.charttime >= e.starttime and bg.charttime <= e.endtime
            and e.ventilation_status = 'InvasiveVent'
    ) as v on v.stay_id = s.stay_id and v.specimen_id = bg.specimen_id
    {%- endif %}
),
charted as (
    select
        s.stay_id,
        'cardiovascular' as component,
        case when m.mbp < 70 then 1 else 0 end as points,
        {{ ceil_to_hour('m.charttime') }} as first_hour,
        {{ ceil_to_hour('m.charttime') }} as last_hour,
        m.available_at
    from stays as s
    inner join {{ ref('int_mean_bp') }} as m on m.stay_id = s.stay_id
    union all
    select
        s.stay_id,
        'cns' as component,
        case when g.gcs < 6 then 4 when g.gcs <= 9 then 3 when g.gcs <= 12 then 2 when g.gcs <= 14 then 1
             else 0 end as points,
        {{ ceil_to_hour('g.charttime') }} as first_hour,
        {{ ceil_to_hour('g.charttime') }} as last_hour,
        g.available_at
    from stays as s
    inner join {{ ref('int_gcs') }} as g on g.stay_id = s.stay_id
),
infusions as (
    -- any epinephrine or norepinephrine at all scores at least 3, as in mimic-code
    select
        s.stay_id,
        'cardiovascular' as component,
        case
            when v.drug in ('epinephrine', 'norepinephrine') and v.vaso_rate > 0.1 then 4
            when v.drug in ('epinephrine', 'norepinephrine') and v.vaso_rate is not null then 3
            when v.drug = 'dopamine' and v.vaso_rate > 15 then 4
            when v.drug = 'dopamine' and v.vaso_rate > 5 then 3
            when v.drug in ('dopamine', 'dobutamine') and v.vaso_rate > 0 then 2
            else 0
        end as points,
        {{ dbt.dateadd('hour', 1, dbt.date_trunc('hour', 'v.starttime')) }} as first_hour,
        {{ dbt.date_trunc('hour', 'v.endtime') }} as last_hour,
        v.available_at
    from stays as s
    inner join {{ ref('int_vasopressors') }} as v on v.stay_id = s.stay_id
),
urine as (
    -- the hour's largest 24-hour rate (mimic-code's uo_24hr), known when its last row is stored
    select
        s.stay_id,
        'renal' as component,
        case when max(u.urineoutput_24hr / u.uo_tm_24hr * 24) < 200 then 4
             when max(u.urineoutput_24hr / u.uo_tm_24hr * 24) < 500 then 3 else 0 end as points,
        {{ ceil_to_hour('u.charttime') }} as first_hour,
        {{ ceil_to_hour('u.charttime') }} as last_hour,
        max(u.available_at) as available_at
    from stays as s
    inner join {{ ref('int_urine_output_rate') }} as u on u.stay_id = s.stay_id
    where u.uo_tm_24hr >= 22 and u.uo_tm_24hr <= 30
    group by s.stay_id, {{ ceil_to_hour('u.charttime') }}
),
evidence as (
    select * from labs
    union all
    select * from respiration
    union all
    select * from charted
    union all
    select * from infusions
    union all
    select * from urine
),
counted as (
    select
        stay_id,
        component,
        points,
        {%- if known_at == 'storetime' %}
        case when {{ ceil_to_hour('available_at') }} > first_hour then {{ ceil_to_hour('available_at') }}
             else first_hour end as counts_from,
        {%- else %}
        first_hour as counts_from,
        {%- endif %}
        {{ dbt.dateadd('hour', 23, 'last_hour') }} as counts_until
    from evidence
    where points > 0 and last_hour >= first_hour
)
select stay_id, component, counts_from, counts_until, max(points) as points
from counted
where counts_from <= counts_until
group by stay_id, component, counts_from, counts_until
