"""A row is made from the table's schema: every column, no other."""

import pytest

from wado_pipeline.core import schema as S


def test_a_row_has_every_column_in_order_and_no_other():
    values = {name: i for i, name in enumerate(reversed(S.INGEST_ERROR.column_names))}
    row = S.INGEST_ERROR.row(**values)
    assert tuple(row) == S.INGEST_ERROR.column_names
    assert row == values
    with pytest.raises(ValueError, match=r"missing \['created_time'\]"):
        S.INGEST_ERROR.row(**{k: v for k, v in values.items() if k != "created_time"})
    with pytest.raises(ValueError, match=r"unknown \['spare'\]"):
        S.INGEST_ERROR.row(**values, spare=1)
