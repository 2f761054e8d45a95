"""schemathesis against the OpenAPI description a running server serves at /openapi.json: every
operation is called with data generated from the description (valid and not), and each reply must be
one the description documents (status, content type, headers, body schema), never a 5xx.

Driven through Hypothesis directly (each operation's `as_strategy()`), not through schemathesis's
pytest plugin: its lazy `from_fixture` schemas need a private attribute pytest 9 no longer has, and
the servers under test are session fixtures. Few examples per operation: the point is that every
documented route answers as documented, in seconds; the servers' own tests cover what answers mean."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

EXAMPLES = 12
CONFIG = schemathesis.Config.from_dict({"checks": {"positive_data_acceptance": {"enabled": False}}})


def check_conformance(url: str, verify: str | bool = True, **call: object) -> list[str]:
    """Run every operation of the description served under `url` (`call`: headers, auth... of each
    request); the operations checked, as `METHOD /path`."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", verify=verify, timeout=30, config=CONFIG)
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def conforms(case):
            case.call_and_validate(base_url=url, verify=verify, timeout=60, **call)

        try:
            conforms()
        except Exception as exc:
            raise AssertionError(f"{operation.label} does not answer as its OpenAPI description says") from exc
        checked.append(operation.label)
    return checked
