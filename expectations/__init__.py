"""Great Expectations quality gates: suites as reviewable code, and the runner that applies them."""
