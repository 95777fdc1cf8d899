"""Development tooling: benchmarks, the test sandbox and synthetic data.

Nothing in production imports this package (a test checks it); the CLI's ``bench`` and
``produce --synthetic`` load it on demand.
"""
