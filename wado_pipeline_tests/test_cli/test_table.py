from wado_pipeline.cli.table import render


def test_integers_stay_integers_and_missing_values_show_as_a_dash():
    rows = [
        {"partition": 0, "committed": None, "age": 1.5},
        {"partition": 1, "committed": 900, "age": None},
    ]
    lines = render(rows, ("partition", "committed", "age")).splitlines()
    assert lines[0].split() == ["partition", "committed", "age"]
    assert lines[1].split() == ["0", "-", "1.5"]
    assert lines[2].split() == ["1", "900", "-"]  # not 900.0
    # columns are aligned: every line ends at the same width
    assert len({len(line) for line in lines}) == 1
