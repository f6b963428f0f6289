-- The task's timing: onset not before ICU admission; recognition not before onset (every qualifying pair's
-- SOFA hour ends at or after the first pair's) nor ICU admission; T = recognition + prediction_hours; the
-- stay still going at T, and in-hospital death only after it.
select stay_id
from {{ ref('cohort') }}
where onset_time < intime
   or recognition_time is null
   or recognition_time < onset_time
   or recognition_time < intime
   or prediction_time is distinct from recognition_time + to_hours({{ var('prediction_hours') }})
   or outtime <= prediction_time
   or (died_in_hospital and deathtime <= prediction_time)
