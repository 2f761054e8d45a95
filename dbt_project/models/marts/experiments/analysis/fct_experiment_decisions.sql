{#- Each declared experiment's status and decision sentence on its last day, with the checks behind
    them: users left out and why, the sample-ratio test, the users still needed. -#}
with decisions as (
    {{ experiment_analysis_rows('decisions') }}
)

select * from decisions
