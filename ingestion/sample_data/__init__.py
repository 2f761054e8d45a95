"""A deterministic, seeded generator of a multi-tenant SaaS commerce product to analyse.

`generate(layout, size, seed)` writes the app database (SQLite), product events (JSON lines in
the landing zone), marketing spend (CSV per channel and day) and the ground truth of what it
injected. Same seed and size, same bytes.
"""

from ingestion.sample_data.generator import generate
from ingestion.sample_data.sizes import SIZES, SampleSize

__all__ = ["SIZES", "SampleSize", "generate"]
