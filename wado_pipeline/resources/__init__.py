"""Resources: thin wrappers around the outside world (Kafka, PostgreSQL, Doris)."""
