"""``python -m wado_pipeline.cli`` (same as ``wado-pipeline``)."""

import sys

from wado_pipeline.cli.main import main

sys.exit(main())
