-- Sepsis-3 per ICU stay, as MIT-LCP mimic-code defines it: a suspected infection and an hour with a
-- 24-hour SOFA >= 2 from 48 h before to 24 h after it (baseline SOFA taken as 0). Per stay the first
-- pair by suspicion time, antibiotic time, culture time and SOFA hour (int_sepsis3_pairs); sofa_time is
-- that hour's end. Written as Parquet beside the feature marts, for the study and for other engines' checks.
{{ config(materialized='external', location=var('feature_dir') ~ '/sepsis3.parquet') }}
select
    subject_id, stay_id, antibiotic_time, culture_time, suspected_infection_time, sofa_time, sofa_score,
    respiration, coagulation, liver, cardiovascular, cns, renal, true as sepsis3
from {{ ref('int_sepsis3_pairs') }}
where mimic_code_rank = 1
