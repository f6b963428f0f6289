{#-
  Per Sepsis-3 stay, when Sepsis-3 could first be known from the record as it was stored (docs/COHORT.md):
  the first time at which one of the stay's Sepsis-3 pairs was complete: its antibiotic had started, its
  culture was known (var culture_known_at) and an hour in its window (48 h before to 24 h after the
  suspicion, as mimic-code pairs them) had a stored-only SOFA >= 2 (int_sofa_hourly_stored); not before ICU
  admission. Of the stay's pairs the one complete first; ties in mimic-code's order. sofa_time is that
  pair's first qualifying hour, with the stored-only SOFA of that hour; a Sepsis-3 stay none of whose pairs
  reaches SOFA >= 2 from stored rows has no row.
-#}
with suspicions as (
    select *
    from {{ ref('int_suspicion_of_infection') }}
    where suspected_infection = 1 and stay_id is not null
),
first_sofa as (
    select sus.subject_id, sus.ab_id, min(s.endtime) as sofa_time
    from suspicions as sus
    inner join {{ ref('int_sofa_hourly_stored') }} as s
        on s.stay_id = sus.stay_id
        and s.endtime >= {{ dbt.dateadd('hour', -48, 'sus.suspected_infection_time') }}
        and s.endtime <= {{ dbt.dateadd('hour', 24, 'sus.suspected_infection_time') }}
        and s.sofa_24hours >= 2
    group by sus.subject_id, sus.ab_id
),
pairs as (
    select
        sus.*,
        f.sofa_time,
        greatest(f.sofa_time, sus.antibiotic_time, sus.culture_known_time, ie.intime) as recognition_time
    from suspicions as sus
    inner join first_sofa as f on f.subject_id = sus.subject_id and f.ab_id = sus.ab_id
    inner join {{ ref('stg_icu_icustays') }} as ie on ie.stay_id = sus.stay_id
),
ranked as (
    select
        *,
        row_number() over (partition by stay_id
                           order by recognition_time, suspected_infection_time, antibiotic_time,
                                    culture_time nulls last, sofa_time, ab_id, micro_specimen_id nulls last)
            as recognition_rank
    from pairs
)
select
    r.stay_id,
    r.subject_id,
    r.recognition_time,
    r.suspected_infection_time,
    r.antibiotic_time,
    r.ab_id,
    r.culture_time,
    r.micro_specimen_id,
    r.culture_known_time,
    r.sofa_time,
    s.sofa_24hours as sofa_score,
    s.respiration_24hours as respiration,
    s.coagulation_24hours as coagulation,
    s.liver_24hours as liver,
    s.cardiovascular_24hours as cardiovascular,
    s.cns_24hours as cns,
    s.renal_24hours as renal
from ranked as r
inner join {{ ref('int_sofa_hourly_stored') }} as s on s.stay_id = r.stay_id and s.endtime = r.sofa_time
where r.recognition_rank = 1
