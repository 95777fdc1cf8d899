from datetime import date, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wado_pipeline.core.dicom import values as V


@given(st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)))
def test_da_roundtrip(d):
    assert V.to_date(f"{d.year:04d}{d.month:02d}{d.day:02d}") == d
    assert V.to_date(f"{d.year:04d}.{d.month:02d}.{d.day:02d}") == d


@pytest.mark.parametrize("bad", ["20241301", "20240230", "2024011", "2024-01-15", "", "abcdefgh"])
def test_da_rejects_unreal_dates(bad):
    with pytest.raises(ValueError):
        V.to_date(bad)


@given(st.times())
def test_tm_roundtrip(t):
    text = f"{t.hour:02d}{t.minute:02d}{t.second:02d}.{t.microsecond:06d}"
    assert V.to_time(text) == t
    assert V.to_time(f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}") == t.replace(microsecond=0)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("08", time(8)),
        ("0830", time(8, 30)),
        ("083015.5", time(8, 30, 15, 500000)),
        ("083015 ", time(8, 30, 15)),
        ("08:30", time(8, 30)),
    ],
)
def test_tm_partial_forms(text, expected):
    assert V.to_time(text) == expected


@pytest.mark.parametrize("bad", ["240000", "126000", "083060", "083015.1234567", "8:30", "ab"])
def test_tm_rejects(bad):
    with pytest.raises(ValueError):
        V.to_time(bad)


@given(st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_is_in_range(n):
    assert V.to_int(f" {n} ") == n


@given(st.integers().filter(lambda n: not -(2**31) <= n <= 2**31 - 1))
def test_is_out_of_range(n):
    with pytest.raises(ValueError):
        V.to_int(str(n))


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_ds_finite(x):
    assert V.to_float(repr(x)) == x


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-inf", "1e999", "1,5", "72kg", "", "1.2.3"])
def test_ds_rejects(bad):
    with pytest.raises(ValueError):
        V.to_float(bad)


def test_multi_number_is_rejoined_with_backslash():
    assert V.to_multi_number(" 1 \\0\\ 0 ") == "1\\0\\0"
    with pytest.raises(ValueError):
        V.to_multi_number("1\\nan\\0")


def test_clean_text_removes_nul_and_padding():
    assert V.clean_text("AB\x00C \x00") == "ABC"


@given(st.text(), st.integers(min_value=0, max_value=300))
def test_fit_bytes(text, limit):
    out, cut = V.fit_bytes(text, limit)
    assert len(out.encode()) <= limit
    assert text.startswith(out)
    assert cut == (len(text.encode()) > limit)
    if cut and len(out) < len(text):
        # as long as possible: one more character would not fit
        assert len(text[: len(out) + 1].encode()) > limit


def test_fit_bytes_cjk():
    name = "山" * 64  # 192 bytes in UTF-8
    out, cut = V.fit_bytes(name, 64)
    assert cut and out == "山" * 21 and len(out.encode()) == 63
