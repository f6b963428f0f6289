-- The task's timing: onset not before ICU admission, prediction time = onset + prediction_hours, the
-- stay still going at the prediction time, and in-hospital death only after it.
select stay_id
from {{ ref('cohort') }}
where onset_time < intime
   or prediction_time <> onset_time + to_hours({{ var('prediction_hours') }})
   or outtime <= prediction_time
   or (died_in_hospital and deathtime <= prediction_time)
