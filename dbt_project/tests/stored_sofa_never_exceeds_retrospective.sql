-- The SOFA known at an hour reads a subset of the rows mimic-code's retrospective SOFA reads for that hour
-- (those stored by then): no component may score higher (int_sofa_hourly_stored, docs/COHORT.md). Not
-- respiration: whether a gas was taken under ventilation is read from the status known then, where
-- mimic-code's episodes also read later rows, so it can differ either way.
select s.stay_id, s.hr
from {{ ref('int_sofa_hourly_stored') }} as s
inner join {{ ref('int_sofa_hourly') }} as r on r.stay_id = s.stay_id and r.hr = s.hr
where s.coagulation_24hours > r.coagulation_24hours
   or s.liver_24hours > r.liver_24hours
   or s.cardiovascular_24hours > r.cardiovascular_24hours
   or s.cns_24hours > r.cns_24hours
   or s.renal_24hours > r.renal_24hours
