"""Plug-ins of the Dagster instance, named in dagster.yaml (not in the definitions): the
run launcher that forks run workers from a warm process."""
