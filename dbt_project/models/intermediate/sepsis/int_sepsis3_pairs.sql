{{ config(materialized='view') }}
-- Every Sepsis-3 pair as MIT-LCP mimic-code forms them: a suspected infection of an ICU stay and an hour
-- with a 24-hour SOFA >= 2 from 48 h before to 24 h after it (baseline SOFA taken as 0). mimic_code_rank
-- is mimic-code's order (suspicion time, antibiotic time, culture time, SOFA hour); sepsis3 is rank 1.
-- Retrospective, as mimic-code's: the SOFA reads rows by charttime, whenever they were stored (when
-- Sepsis-3 was known from stored rows is int_sepsis3_recognition's). A view: the join is large on full
-- MIMIC-IV and read once.
select
    soi.subject_id,
    soi.stay_id,
    soi.ab_id,
    soi.antibiotic_time,
    soi.culture_time,
    soi.micro_specimen_id,
    soi.suspected_infection_time,
    s.endtime as sofa_time,
    s.sofa_24hours as sofa_score,
    s.respiration_24hours as respiration,
    s.coagulation_24hours as coagulation,
    s.liver_24hours as liver,
    s.cardiovascular_24hours as cardiovascular,
    s.cns_24hours as cns,
    s.renal_24hours as renal,
    -- ab_id and micro_specimen_id only break ties that mimic-code leaves to chance (equal in sepsis3's columns)
    row_number() over (partition by soi.stay_id
                       order by soi.suspected_infection_time nulls last, soi.antibiotic_time nulls last,
                                soi.culture_time nulls last, s.endtime, soi.ab_id nulls last,
                                soi.micro_specimen_id nulls last) as mimic_code_rank
from {{ ref('int_suspicion_of_infection') }} as soi
inner join {{ ref('int_sofa_hourly') }} as s
    on s.stay_id = soi.stay_id
    and s.endtime >= {{ dbt.dateadd('hour', -48, 'soi.suspected_infection_time') }}
    and s.endtime <= {{ dbt.dateadd('hour', 24, 'soi.suspected_infection_time') }}
where soi.stay_id is not null and s.sofa_24hours >= 2 and soi.suspected_infection = 1
