-- Per Sepsis-3 stay, the pair recognised first: recognition_time is when every criterion of the pair was
-- known (int_sepsis3_pairs.criteria_known_time), not before ICU admission. Ties go to mimic-code's order.
with pairs as (
    select
        p.*,
        greatest(p.criteria_known_time, ie.intime) as recognition_time
    from {{ ref('int_sepsis3_pairs') }} as p
    inner join {{ ref('stg_icu_icustays') }} as ie on ie.stay_id = p.stay_id
),
ranked as (
    select
        *,
        row_number() over (partition by stay_id order by recognition_time nulls last, mimic_code_rank) as recognition_rank
    from pairs
)
select
    stay_id,
    subject_id,
    recognition_time,
    suspected_infection_time,
    antibiotic_time,
    ab_id,
    culture_time,
    micro_specimen_id,
    culture_known_time,
    sofa_time,
    sofa_score,
    mimic_code_rank
from ranked
where recognition_rank = 1
