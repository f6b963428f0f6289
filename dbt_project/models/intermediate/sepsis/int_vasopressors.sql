-- Infusions of the four vasopressors/inotropes SOFA reads, rate in mcg/kg/min (mimic-code medication/*);
-- available_at: when the row was stored (not before it started).
select
    stay_id,
    case itemid when 221906 then 'norepinephrine' when 221289 then 'epinephrine'
                when 221662 then 'dopamine' when 221653 then 'dobutamine' end as drug,
    case when itemid = 221906 and rateuom = 'mg/kg/min' and patientweight = 1 then rate
         when itemid = 221906 and rateuom = 'mg/kg/min' then rate * 1000.0
         else rate end as vaso_rate,
    starttime,
    endtime,
    {{ available_at('starttime', 'storetime') }} as available_at
from {{ ref('stg_icu_inputevents') }}
where itemid in (221906, 221289, 221662, 221653)
