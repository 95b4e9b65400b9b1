"""The benchmark (cnnkit.bench) and the step profiler (cnnkit.profiler) on tiny batches; timings are not checked."""
import argparse
import subprocess
import sys

import numpy as np
import pytest

from cnnkit import bench, fast, reference
from cnnkit.bench import cases, report, worker
from cnnkit.cli import main
from cnnkit.profiler import format_profile, profile_step, timed_calls
from cnnkit.recipes import convnet

TINY = ["--quick", "--repeat", "1", "--batch", "2"]


def job(case, contender, dtype="float32", **settings):
    return dict(case=case, contender=contender, dtype=dtype, **{"threads": 1, "batch": 2, "repeat": 2, **settings})


def run(argv, env=None):
    return bench.run(bench.add_arguments(argparse.ArgumentParser()).parse_args(argv), env)


def table_rows(text):
    """Markdown table lines as dicts of cells by column title, keyed by (row, dtype)."""
    titles = ["row", "what"] + [title for title, _ in report.COLUMNS[1:]]
    lines = [line for line in text.splitlines() if line.startswith("| ")][2:]
    rows = [dict(zip(titles, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines]
    return {(row["row"], row["dtype"]): row for row in rows}


@pytest.fixture
def in_process(monkeypatch):
    """Run the workers' jobs in this process (so monkeypatches reach them); records the jobs and env."""
    seen = []

    def run_job(job, env=None):
        seen.append((job, env))
        return worker.profile(job) if "profile" in job else worker.time_alone(job)

    monkeypatch.setattr(bench, "run_job", run_job)
    return seen


# ---------------------------------------------------------------- worker protocol


@pytest.mark.subprocess
def test_worker_process_times_one_contender_and_checks_fast():
    result = worker.run_job(job("P", "fast", "float64"))
    assert set(result) == {"seconds", "agrees"}
    assert len(result["seconds"]) == 2 and all(s > 0 for s in result["seconds"]) and result["agrees"] is True
    assert worker.run_job(job("matmul64", "numpy"))["agrees"] is None


@pytest.mark.subprocess
def test_worker_failure_names_the_job_and_the_error():
    with pytest.raises(ChildProcessError, match=r'"case": "Z".*KeyError'):
        worker.run_job(job("Z", "fast"))
    done = subprocess.run([sys.executable, "-m", "cnnkit.bench"], capture_output=True, text=True)
    assert done.returncode != 0 and "usage: python -m cnnkit.bench JOB" in done.stderr


@pytest.mark.parametrize("name", ["A", "Q", "mnist"])
def test_every_kind_of_case_times_reference_and_fast(name):
    for contender in ("reference", "fast"):
        result = worker.time_alone(job(name, contender, repeat=1))
        assert len(result["seconds"]) == 1 and result["agrees"] is (True if contender == "fast" else None)


def test_batch_override_and_matmul_cases():
    assert worker.case("B", batch=3).x == (3, 64, 32, 32) and worker.case("B").x == (64, 64, 32, 32)
    assert worker.case("matmul128").flops() == 2 * 128 ** 3


@pytest.fixture
def wrong_fast_max_pool(monkeypatch):
    """cnnkit.fast's max pooling made to add 1 to the reference's output."""
    def wrong_forward(*args):
        out, cache = reference.max_pool2d_forward(*args)
        return out + 1, cache

    monkeypatch.setattr(fast, "max_pool2d_forward", wrong_forward)
    monkeypatch.setattr(fast, "max_pool2d_backward", reference.max_pool2d_backward)


def test_check_catches_a_wrong_fast_op(wrong_fast_max_pool):
    assert not worker.case("P", batch=2).check("float64")


def test_net_check_compares_a_whole_step():
    assert worker.case("mnist", batch=2).check()


@pytest.mark.torch
@pytest.mark.slow
def test_torch_twin_is_the_same_network():
    torch = pytest.importorskip("torch")
    model = convnet((3, 8, 8), 10, width=4)
    X = np.random.default_rng(0).standard_normal((5, 3, 8, 8)).astype(np.float32)
    y = np.arange(5)
    twin = cases.torch_twin(torch, model)
    expected, _ = model.loss(X, y)
    loss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(X)), torch.from_numpy(y))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert cases.torch_step(torch, model, X, y)() == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- medians, spreads, table


def test_summary_is_median_and_half_range_over_median():
    assert report.summary([0.003, 0.001, 0.002, 0.010]) == (0.0025, pytest.approx(0.009 / 0.005))
    assert report.timing_cell([0.002, 0.0021, 0.0019]) == "2 ±5%"
    assert report.timing_cell(None) == "-"


def row(name="A", dtype="float32", ref=(0.1,), fast=(0.01, 0.012), torch=(0.02,), agrees=True, gemm=0.5):
    return dict(name=name, dtype=dtype, ref=ref, fast=fast, torch=torch, agrees=agrees, gemm=gemm)


def test_cells_give_ratios_speedup_and_the_target():
    cells = report.cells(row())
    assert cells[:5] == ["A", "float32", "100 ±0%", "11 ±9%", "20 ±0%"]
    assert cells[5:] == ["0.55", "9.09x", "50", "<=1.00x torch: met"]
    assert report.cells(row(dtype="float64"))[-1] == "<=0.50x torch: missed"
    assert report.cells(row(name="Q", torch=None, gemm=None))[5:] == ["-", "9.09x", "-", ""]
    assert report.cells(row(agrees=False))[-1].endswith("FAST DISAGREES WITH REFERENCE")


def test_text_and_markdown_lines_line_up_with_the_header():
    cells = report.cells(row())
    assert len(report.text_line(cells).split("  ")) >= len(report.COLUMNS) - 1
    markdown = report.markdown_line(cells, "conv x(100, 3, 32, 32)")
    title, rule = report.header(markdown=True).splitlines()
    assert markdown.count("|") == title.count("|") == rule.count("|") == len(report.COLUMNS) + 2


# ---------------------------------------------------------------- profiler


class Counter:
    def __init__(self):
        self.calls = 0

    def work(self, value):
        self.calls += 1
        return value * 2


def test_timed_calls_wraps_only_inside_the_block():
    counter = Counter()
    with timed_calls([(counter, "work")]) as seconds:
        assert counter.work(3) == 6 and "work" in vars(counter)
    assert seconds[0] > 0 and counter.calls == 1 and "work" not in vars(counter)
    own = counter.own = lambda: 1
    with timed_calls([(counter, "own")]):
        counter.own()
    assert counter.own is own


def test_profile_rows_add_up_to_the_step():
    model, step = worker.case("mnist", batch=2).training()
    step()
    profile = profile_step(model, step, steps=2)
    names = [type(layer).__name__ for layer in model.layers]
    assert model.fused() == {1, 4}  # the ReLUs after the convolutions run inside them: no time of their own
    assert [name for name, _, _ in profile["layers"]] == [
        name + (f", fused into ({i - 1})" if i in (1, 4) else "") for i, name in enumerate(names)]
    assert all(f == b == 0 for _, f, b in (profile["layers"][i] for i in (1, 4)))
    spent = sum(f + b for _, f, b in profile["layers"]) + profile["loss"] + profile["rest"]
    assert spent == pytest.approx(profile["step"], rel=1e-6)
    assert all(f >= 0 and b >= 0 for _, f, b in profile["layers"]) and profile["rest"] > 0
    lines = format_profile(profile, rest="update (Adam)").splitlines()
    assert lines[0].split() == ["layer", "forward", "ms", "backward", "ms", "share"]
    assert len(lines) == len(model.layers) + 4 and lines[-2].startswith("update (Adam)")
    shares = [float(line.rsplit(None, 1)[1].rstrip("%")) for line in lines[1:-1]]
    assert sum(shares) == pytest.approx(100, abs=len(shares))


def test_profile_option_prints_the_layer_table(in_process, capsys):
    assert run(["--profile", "--batch", "2", "--repeat", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "profile: train step convnet width 16, x(2, 1, 28, 28)" in out
    assert "(0) Conv2d" in out and "(3) Conv2d" in out and "update (Adam)" in out
    assert in_process[0][0] == dict(profile="mnist", threads=1, batch=2, repeat=1)


# ---------------------------------------------------------------- the command


@pytest.mark.subprocess
def test_quick_run_end_to_end_through_cnnkit_bench(capsys):
    assert main(["bench", *TINY, "--rows", "P,mnist", "--dtype", "float32", "--no-torch", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()]
    assert [line[:2] for line in lines if line[:1] in (["P"], ["mnist"])] == [["P", "float32"], ["mnist", "float32"]]
    assert "each contender timed alone, in a process of its own" in out and "1 timed; median ms" in out
    assert "load average after" in out


@pytest.mark.slow
def test_every_row_and_dtype_in_process(in_process, capsys):
    assert run(TINY + ["--no-torch", "--markdown"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert list(rows) == [(name, dtype) for name, case in cases.ROWS.items() for dtype in case.dtypes]
    for (name, _), cells in rows.items():
        assert cells["torch ms"] == cells["fast/torch"] == "-"
        assert cells["what"] == worker.case(name, batch=2).describe()
        assert (cells["GEMM %"] == "-") == (name not in "ABC")
        ref, fast = (float(cells[key].split()[0]) for key in ("ref ms", "fast ms"))
        assert float(cells["speedup"].rstrip("x")) == pytest.approx(ref / fast, rel=0.06)
    jobs = [job for job, _ in in_process]
    assert {job["case"] for job in jobs if job["contender"] == "numpy"} == {"matmul512"}
    assert all(job["threads"] == jobs[0]["threads"] and job["repeat"] == 1 for job in jobs)


@pytest.mark.torch
@pytest.mark.subprocess
def test_torch_is_timed_when_installed(capsys):
    pytest.importorskip("torch")
    assert run(TINY + ["--rows", "mnist", "--threads", "1", "--markdown"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert list(rows) == [("mnist", "float32")]
    for cells in rows.values():
        fast, torch = (float(cells[key].split()[0]) for key in ("fast ms", "torch ms"))
        assert float(cells["fast/torch"]) == pytest.approx(fast / torch, rel=0.06)
        assert cells["target"].split(": ")[1] in ("met", "missed")


def test_disagreement_is_flagged(in_process, wrong_fast_max_pool, capsys):
    assert run(TINY + ["--rows", "P", "--dtype", "float64", "--no-torch"]) == 1
    assert "FAST DISAGREES WITH REFERENCE" in capsys.readouterr().out


def test_workers_get_the_callers_environment_and_openblas_is_named(in_process, capsys):
    env = {"PATH": "/bin", "OPENBLAS_CORETYPE": "Haswell", "OMP_WAIT_POLICY": "passive"}
    assert run(TINY + ["--rows", "P", "--dtype", "float32", "--no-torch"], env) == 0
    assert all(given == env for _, given in in_process)
    out = capsys.readouterr().out
    assert "environment: OMP_WAIT_POLICY=passive OPENBLAS_CORETYPE=Haswell" in out
    assert "`env -u OPENBLAS_CORETYPE cnnkit bench` measures what a user gets" in out


@pytest.mark.subprocess
def test_train_epoch_failure_is_reported(tmp_path):
    with pytest.raises(ChildProcessError, match=r"cnnkit train --dataset mnist .* failed"):
        bench._epoch(tmp_path / "missing", 1, None)


@pytest.mark.parametrize("argv, message", [
    (["--rows", "A,Z"], "unknown rows ['Z']"),
    (["--repeat", "0"], "expected an integer >= 1, got '0'"),
    (["--profile", "A"], "invalid choice: 'A'"),
])
def test_bad_options_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        run(argv)
    assert message in capsys.readouterr().err

