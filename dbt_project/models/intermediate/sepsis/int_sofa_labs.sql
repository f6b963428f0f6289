-- Per lab specimen, the three labs SOFA reads (mimic-code chemistry, complete_blood_count, enzyme):
-- creatinine (0, 150], platelets > 0, total bilirubin > 0. Joined to ICU hours by hadm_id.
select
    specimen_id,
    max(hadm_id) as hadm_id,
    max(charttime) as charttime,
    max(case when itemid = 50912 and valuenum <= 150 then valuenum end) as creatinine,
    min(case when itemid = 51265 then valuenum end) as platelet,
    max(case when itemid = 50885 then valuenum end) as bilirubin_total
from {{ ref('stg_hosp_labevents') }}
where itemid in (50912, 51265, 50885) and valuenum > 0
group by specimen_id
