"""The pure core: message model, DICOM extraction and grouping.

Nothing in this package imports Dagster, Kafka clients or SQL drivers, so the
pipeline, the CLI and the benchmark run exactly the same code.
"""
