"""The product event contract: event types, their versioned schemas, and validation."""
