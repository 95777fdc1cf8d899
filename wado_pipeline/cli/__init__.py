"""The operator's command line, ``wado-pipeline`` (see ``main``)."""

from wado_pipeline.cli.main import main

__all__ = ["main"]
