-- Mean arterial pressure per stay and charted time (mimic-code vitalsign.mbp): invasive or cuff, 0-300 mmHg;
-- available_at: when the last of its rows was stored.
select
    stay_id,
    charttime,
    avg(case when valuenum > 0 and valuenum < 300 then valuenum end) as mbp,
    max({{ available_at('charttime', 'storetime') }}) as available_at
from {{ ref('stg_icu_chartevents') }}
where stay_id is not null and itemid in (220052, 220181, 225312)
group by subject_id, stay_id, charttime
