"""Smoke tests of the benchmark table (cnnkit.bench) on tiny batches; timings are not checked."""
import argparse

import pytest

from cnnkit import bench, fast, reference

TINY = ["--quick", "--repeat", "1", "--batch", "2"]


def run(argv):
    return bench.run(bench.add_arguments(argparse.ArgumentParser()).parse_args(argv))


def table_rows(text):
    """Table lines split into cells, keyed by (shape, dtype)."""
    rows = [line.split() for line in text.splitlines()]
    return {tuple(row[:2]): row for row in rows
            if row[:1] and row[0] in bench.SHAPES and row[1] in ("float32", "float64")}


def test_table_has_every_shape_and_dtype(capsys):
    assert run(TINY + ["--no-torch"]) == 0
    text = capsys.readouterr().out
    rows = table_rows(text)
    assert set(rows) == {(name, dtype) for name in "ABCPQ" for dtype in ("float32", "float64")}
    for (name, _), cells in rows.items():
        ref_ms, fast_ms, torch_ms, ratio, speedup, gemm = cells[2:8]
        assert float(ref_ms) > 0 and float(fast_ms) > 0 and torch_ms == ratio == "-"
        assert float(speedup.rstrip("x")) == pytest.approx(float(ref_ms) / float(fast_ms), rel=0.06)
        assert (gemm == "-") == (name in "PQ")
    assert text.count("whole-batch im2col columns, not kept") == 6
    assert "median of 1 interleaved runs" in text


def test_table_compares_with_torch_when_it_imports(capsys):
    pytest.importorskip("torch")
    assert run(TINY + ["--shapes", "P", "--dtype", "float32"]) == 0
    cells = table_rows(capsys.readouterr().out)[("P", "float32")]
    assert float(cells[5]) == pytest.approx(float(cells[3]) / float(cells[4]), rel=0.06)
    assert cells[-1] in ("met", "missed")


def test_disagreement_is_flagged(monkeypatch, capsys):
    def wrong_forward(*args):
        out, cache = reference.max_pool2d_forward(*args)
        return out + 1, cache

    monkeypatch.setattr(fast, "max_pool2d_forward", wrong_forward)
    monkeypatch.setattr(fast, "max_pool2d_backward", reference.max_pool2d_backward)
    assert run(TINY + ["--shapes", "P", "--dtype", "float64", "--no-torch"]) == 1
    assert "FAST DISAGREES WITH REFERENCE" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--shapes", "A,Z"], "unknown shapes ['Z']"),
    (["--repeat", "0"], "expected an integer >= 1, got '0'"),
])
def test_bad_options_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        run(argv)
    assert message in capsys.readouterr().err
