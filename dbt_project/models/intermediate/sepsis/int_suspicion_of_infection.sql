-- Suspected infection per antibiotic (mimic-code suspicion_of_infection): the patient's earliest
-- culture taken up to 72 h before the antibiotic (its time is the suspicion time), else one taken up
-- to 24 h after it (the antibiotic's time). Cultures with a date only match on dates (3 days / 1 day).
with antibiotics as (
    select
        *,
        date_trunc('day', starttime) as antibiotic_date,
        row_number() over (partition by subject_id
                           order by starttime nulls first, stoptime nulls first, antibiotic nulls first,
                                    hadm_id nulls first, stay_id nulls first) as ab_id
    from {{ ref('int_antibiotic') }}
),
cultures as (
    select
        micro_specimen_id,
        max(subject_id) as subject_id,
        cast(max(chartdate) as date) as chartdate,
        max(charttime) as charttime,
        max(spec_type_desc) as spec_type_desc,
        max(case when org_name is not null and org_itemid not in (90856, 90760) and org_name <> ''
                      and org_name <> 'CANCELLED' then 1 else 0 end) as positive_culture
    from {{ ref('stg_hosp_microbiologyevents') }}
    group by micro_specimen_id
),
{% for name, rule in [
    ('culture_first', "(c.charttime is not null and a.starttime > c.charttime and a.starttime <= c.charttime + interval 72 hour)
        or (c.charttime is null and a.antibiotic_date >= c.chartdate and a.antibiotic_date <= c.chartdate + interval 3 day)"),
    ('culture_after', "(c.charttime is not null and a.starttime >= c.charttime - interval 24 hour and a.starttime < c.charttime)
        or (c.charttime is null and a.antibiotic_date >= c.chartdate - interval 1 day and a.antibiotic_date <= c.chartdate)")] %}
{{ name }} as (
    select
        a.subject_id,
        a.ab_id,
        coalesce(c.charttime, cast(c.chartdate as timestamp)) as culture_time,
        c.spec_type_desc as specimen,
        c.positive_culture,
        row_number() over (partition by a.subject_id, a.ab_id
                           order by c.chartdate nulls first, c.charttime nulls last, c.positive_culture desc,
                                    c.micro_specimen_id nulls first) as culture_seq
    from antibiotics as a
    inner join cultures as c
        on c.subject_id = a.subject_id and ({{ rule }})
){{ "," if loop.first }}
{% endfor %}
select
    a.subject_id,
    a.stay_id,
    a.hadm_id,
    a.ab_id,
    a.antibiotic,
    a.starttime as antibiotic_time,
    (b.specimen is not null or f.specimen is not null)::integer as suspected_infection,
    case when b.specimen is null and f.specimen is null then null
         else coalesce(b.culture_time, a.starttime) end as suspected_infection_time,
    coalesce(b.culture_time, f.culture_time) as culture_time,
    coalesce(b.specimen, f.specimen) as specimen,
    coalesce(b.positive_culture, f.positive_culture) as positive_culture
from antibiotics as a
left join culture_first as b on b.subject_id = a.subject_id and b.ab_id = a.ab_id and b.culture_seq = 1
left join culture_after as f on f.subject_id = a.subject_id and f.ab_id = a.ab_id and f.culture_seq = 1
