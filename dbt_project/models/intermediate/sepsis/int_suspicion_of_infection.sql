-- Suspected infection per antibiotic (mimic-code suspicion_of_infection): the patient's earliest
-- culture taken up to 72 h before the antibiotic (its time is the suspicion time), else one taken up
-- to 24 h after it (the antibiotic's time). Cultures with a date only match on dates (3 days / 1 day).
-- Added to mimic-code's columns: the culture's micro_specimen_id and culture_known_time, when the culture
-- was known (var culture_known_at, docs/COHORT.md).
{%- set known_at = var('culture_known_at') %}
{%- if known_at not in ('storetime', 'charttime') %}
{{ exceptions.raise_compiler_error("var culture_known_at must be 'storetime' or 'charttime', not '" ~ known_at ~ "'") }}
{%- endif %}
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
                      and org_name <> 'CANCELLED' then 1 else 0 end) as positive_culture,
        -- taken at: charttime, or the end of chartdate when only the date is recorded
        coalesce(max(charttime), {{ dbt.dateadd('day', 1, 'cast(max(chartdate) as timestamp)') }}) as taken_known_time,
        -- stored at: the earliest row's storetime, or the end of its storedate when only the date is recorded
        min(coalesce(storetime, {{ dbt.dateadd('day', 1, 'cast(storedate as timestamp)') }})) as stored_time
    from {{ ref('stg_hosp_microbiologyevents') }}
    group by micro_specimen_id
),
cultures_known as (
    select
        *,
        {%- if known_at == 'storetime' %}
        -- never before it was taken (a storetime before the charttime is a recording error)
        greatest(coalesce(stored_time, taken_known_time), coalesce(charttime, cast(chartdate as timestamp)))
        {%- else %}
        taken_known_time
        {%- endif %} as culture_known_time
    from cultures
),
{% for name, rule in [
    ('culture_first', "(c.charttime is not null and a.starttime > c.charttime and a.starttime <= " ~ dbt.dateadd('hour', 72, 'c.charttime') ~ ")
        or (c.charttime is null and a.antibiotic_date >= c.chartdate and a.antibiotic_date <= " ~ dbt.dateadd('day', 3, 'c.chartdate') ~ ")"),
    ('culture_after', "(c.charttime is not null and a.starttime >= " ~ dbt.dateadd('hour', -24, 'c.charttime') ~ " and a.starttime < c.charttime)
        or (c.charttime is null and a.antibiotic_date >= " ~ dbt.dateadd('day', -1, 'c.chartdate') ~ " and a.antibiotic_date <= c.chartdate)")] %}
{{ name }} as (
    select
        a.subject_id,
        a.ab_id,
        coalesce(c.charttime, cast(c.chartdate as timestamp)) as culture_time,
        c.spec_type_desc as specimen,
        c.positive_culture,
        c.micro_specimen_id,
        c.culture_known_time,
        row_number() over (partition by a.subject_id, a.ab_id
                           order by c.chartdate nulls first, c.charttime nulls last, c.positive_culture desc,
                                    c.micro_specimen_id nulls first) as culture_seq
    from antibiotics as a
    inner join cultures_known as c
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
    cast(b.specimen is not null or f.specimen is not null as integer) as suspected_infection,
    case when b.specimen is null and f.specimen is null then null
         else coalesce(b.culture_time, a.starttime) end as suspected_infection_time,
    coalesce(b.culture_time, f.culture_time) as culture_time,
    coalesce(b.specimen, f.specimen) as specimen,
    coalesce(b.positive_culture, f.positive_culture) as positive_culture,
    case when b.ab_id is not null then b.micro_specimen_id else f.micro_specimen_id end as micro_specimen_id,
    case when b.ab_id is not null then b.culture_known_time else f.culture_known_time end as culture_known_time
from antibiotics as a
left join culture_first as b on b.subject_id = a.subject_id and b.ab_id = a.ab_id and b.culture_seq = 1
left join culture_after as f on f.subject_id = a.subject_id and f.ab_id = a.ab_id and f.culture_seq = 1
