"""Assets of the platform, one module per part they wrap."""
