"""Tables for people: the command line's aligned output, through pandas.

The pipeline's hot path keeps plain rows (dicts): a DataFrame round trip costs about
two orders of magnitude more than a plain copy of a batch's rows (``bench parse``
prints it; docs/performance.md), and turns an integer column with a NULL into floats.
Where a person reads a table, pandas earns its place: aligned columns, missing values
shown as ``-``, numbers formatted once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd


def render(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as an aligned text table with ``columns`` in that order."""
    # object dtype: an integer column with a missing value stays integers, not floats
    frame = pd.DataFrame(list(rows), columns=list(columns), dtype=object)
    return frame.fillna("-").to_string(index=False)
