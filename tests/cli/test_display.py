"""Readable console output: long lists summarised, records aligned, tables with a header."""

from brickwork.cli.display import brief, print_record, print_table


def test_brief_summarises_long_lists_and_rounds_numbers():
    assert brief([0.05] * 30) == "30 x 0.05"
    assert brief(list(range(20))) == "20 values, 0 to 19"
    assert brief([1, 2.123456]) == "[1, 2.123]"
    assert brief(["a"] * 10) == "[a, a, a, ... 10 items]"
    assert brief({"loss": 1.234567, "ok": True}) == "{loss: 1.235, ok: True}"


def test_record_and_table_layout(capsys):
    print_record({"name": "t", "fractions": [0.1] * 12})
    print_table(
        [{"name": "long-name", "kind": "lora"}, {"name": "b", "kind": "x"}], ["name", "kind"]
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["name:      t", "fractions: 12 x 0.1"]
    assert lines[2:] == ["name       kind", "long-name  lora", "b          x"]
