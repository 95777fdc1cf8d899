"""Dagster's own instance as the sensor, the checks and retention read and prune it."""
