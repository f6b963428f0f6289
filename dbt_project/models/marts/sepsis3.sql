-- Sepsis-3 per ICU stay, as MIT-LCP mimic-code defines it: a suspected infection and an hour with a
-- 24-hour SOFA >= 2 from 48 h before to 24 h after it (baseline SOFA taken as 0). Per stay the first
-- pair by suspicion time, antibiotic time, culture time and SOFA hour; sofa_time is that hour's end.
with pairs as (
    select
        soi.subject_id,
        soi.stay_id,
        soi.antibiotic_time,
        soi.culture_time,
        soi.suspected_infection_time,
        s.endtime as sofa_time,
        s.sofa_24hours as sofa_score,
        s.respiration_24hours as respiration,
        s.coagulation_24hours as coagulation,
        s.liver_24hours as liver,
        s.cardiovascular_24hours as cardiovascular,
        s.cns_24hours as cns,
        s.renal_24hours as renal,
        row_number() over (partition by soi.stay_id
                           order by soi.suspected_infection_time, soi.antibiotic_time, soi.culture_time,
                                    s.endtime) as rn
    from {{ ref('int_suspicion_of_infection') }} as soi
    inner join {{ ref('int_sofa_hourly') }} as s
        on s.stay_id = soi.stay_id
        and s.endtime >= soi.suspected_infection_time - interval 48 hour
        and s.endtime <= soi.suspected_infection_time + interval 24 hour
    where soi.stay_id is not null and s.sofa_24hours >= 2 and soi.suspected_infection = 1
)
select
    subject_id, stay_id, antibiotic_time, culture_time, suspected_infection_time, sofa_time, sofa_score,
    respiration, coagulation, liver, cardiovascular, cns, renal, true as sepsis3
from pairs
where rn = 1
