-- The latest result of every quality gate (Great Expectations, quality.quality_results).
select suite, asset, expectation, severity, success, observed_value, expected,
       cast(unexpected_count as bigint) as unexpected_count, cast(held_rows as bigint) as held_rows,
       cast(validated_at as timestamp) as validated_at
from quality.quality_results
qualify row_number() over (partition by suite, asset, expectation order by validated_at desc) = 1
