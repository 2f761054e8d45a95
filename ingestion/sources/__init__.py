"""dlt sources: the app database, landing-zone events and marketing spend files."""
