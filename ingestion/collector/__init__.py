"""The HTTP event collector: validated events appended durably to the landing zone."""
