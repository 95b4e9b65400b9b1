"""The benchmark (cnnkit.bench) and the step profiler (cnnkit.profiler) on tiny batches; timings are not checked."""
import argparse
import csv
import subprocess
import sys

import numpy as np
import pytest

from cnnkit import bench, fast, layers, reference
from cnnkit.bench import cases, report, suite, worker
from cnnkit.cli import main
from cnnkit.models import Sequential
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
        return worker.result(job)

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
    (["--profile", "A"], "expected a net (mnist, cifar, cifar-wide, lenet5, small, all-conv) or a saved model "
                         "file, got 'A'"),
    (["--suite", "--layers", "lenet-*,nothing*"], "no suite layer matches ['nothing*']"),
])
def test_bad_options_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        run(argv)
    assert message in capsys.readouterr().err



# ---------------------------------------------------------------- training steps of other nets


@pytest.mark.parametrize("name", ["lenet5", "small", "all-conv"])
def test_other_nets_check_and_match_their_torch_twin_over_two_steps(name):
    """The nets beside `cnnkit train`'s convnet: fast agrees with the reference, and torch's twin has
    the same loss before and after one update (Adam, or SGD with momentum for "small")."""
    net = worker.case(name, batch=3)
    assert net.check()
    torch = pytest.importorskip("torch")
    model, X, y = net.build()
    twin_step = cases.torch_step(torch, *net.build(), net.rule)
    step = cases.training_step(model, X, y, net.rule)
    assert [step(), step()] == pytest.approx([twin_step(), twin_step()], rel=1e-4)


def test_profile_of_a_saved_model_file(in_process, tmp_path, capsys):
    path = tmp_path / "model.npz"
    cases.ARCHITECTURES["small"]((3, 32, 32), 10, 4, np.random.default_rng(0)).save(path)
    assert run(["--profile", str(path), "--batch", "3", "--repeat", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert f"profile: train step of {path}, batch 3" in out
    assert "(0) Conv2d" in out and "(2) AvgPool2d" in out and "update (Adam)" in out
    Sequential([layers.Flatten(), layers.Linear(4, 2)]).save(path)  # no input shape recorded
    with pytest.raises(ValueError, match="records no input shape"):
        worker.profile(dict(profile=str(path), batch=2, repeat=1, threads=1))


# ---------------------------------------------------------------- the suite


def test_suite_draws_from_the_architectures_people_train():
    layers_ = suite.SUITE.values()
    convs = [layer for layer in layers_ if isinstance(layer, cases.Conv)]
    pools = [layer for layer in layers_ if isinstance(layer, cases.Pool)]
    assert len(suite.LAYERS) >= 40 and len(suite.SUITE) == len(suite.LAYERS) + suite.RANDOM_LAYERS
    kernels = {(cases._pair(c.kernel), cases._pair(c.stride)) for c in convs}
    assert {((5, 5), (1, 1)), ((11, 11), (4, 4)), ((7, 7), (2, 2)), ((3, 3), (2, 2)), ((1, 1), (2, 2)),
            ((1, 7), (1, 1)), ((7, 1), (1, 1)), ((1, 3), (1, 1)), ((3, 1), (1, 1))} <= kernels
    assert {1, 3} <= {c.x[1] for c in convs} and {1, 256} <= {layer.x[0] for layer in layers_}
    assert {2, 4, 7, 8, 27} <= {layer.x[2] for layer in layers_}
    assert any(p.kind == "avg" and cases._pair(p.kernel) == p.x[2:] for p in pools)  # global average pooling
    assert any(cases._pair(p.kernel) == (3, 3) and cases._pair(p.stride) == (2, 2) for p in pools)
    assert all(min(cases._out_hw(layer.x, layer.kernel, layer.stride, layer.padding)) >= 1 for layer in layers_)
    assert all(conv.flops() / 6 <= 1.05 * suite.MAX_MACS for conv in convs)
    assert suite.random_layers() == suite.random_layers() != suite.random_layers(seed=1)
    assert suite.select(["lenet-*", "cifar-gap"]) == ["lenet-conv1", "lenet-pool1", "lenet-conv2", "lenet-pool2",
                                                      "cifar-gap"]


def read_csv(path):
    """(header, rows) of a CSV file, each a list of cells."""
    with open(path, newline="") as file:
        header, *rows = csv.reader(file)
    return header, rows


def test_suite_run_writes_the_csv(in_process, tmp_path, capsys):
    path = tmp_path / "suite.csv"
    argv = ["--suite", "--layers", "lenet-*,cifar-gap", "--batch", "2", "--repeat", "1", "--threads", "1",
            "--no-torch", "--csv", str(path)]
    assert run(argv) == 0
    header, rows = read_csv(path)
    assert header == report.CSV_COLUMNS
    names = suite.select(["lenet-*", "cifar-gap"])
    assert [row[0] + row[2] + row[3] for row in rows] == [
        name + dtype + "1" for dtype in ("float32", "float64") for name in names]
    assert all(float(row[4]) > 0 and row[5] == row[6] == "" for row in rows)
    assert rows[0][:2] == ["lenet-conv1", "conv x(2, 1, 32, 32) 6x5x5 s1 p0"]
    out = capsys.readouterr().out
    assert "fast/torch: torch not timed" in out and f"wrote {path}" in out
    jobs = [job for job, _ in in_process]
    assert {job["contender"] for job in jobs} == {"fast"} and all(job["check_batch"] == 2 for job in jobs)
    assert [job["cases"] for job in jobs if job["dtype"] == "float32"] == [names]


def test_suite_rounds_keep_each_contenders_fastest_round(monkeypatch, tmp_path):
    """Rounds of fresh processes, the contenders taking turns; a layer keeps each one's round of the lowest
    median, and disagrees when fast disagreed in any round."""
    medians = {"fast": iter([3.0, 1.0, 2.0]), "torch": iter([5.0, 6.0, 4.0])}
    calls = []

    def run_job(job, env=None):
        calls.append(job["contender"])
        seconds = next(medians[job["contender"]])
        agrees = None if job["contender"] == "torch" else seconds != 2.0
        return {"results": [{"seconds": [seconds, seconds + 0.5], "agrees": agrees} for _ in job["cases"]]}

    monkeypatch.setattr(bench, "run_job", run_job)
    monkeypatch.setattr(bench, "_torch_version", lambda: "2.x")
    path = tmp_path / "suite.csv"
    argv = ["--suite", "--layers", "cifar-gap", "--dtype", "float32", "--threads", "1", "--rounds", "3",
            "--csv", str(path)]
    assert run(argv) == 1  # fast disagreed in its third round
    assert calls == ["fast", "torch"] * 3
    _, rows = read_csv(path)
    assert [float(cell) for cell in rows[0][4:7]] == [1250, 4250, pytest.approx(1.25 / 4.25, abs=1e-3)]  # ms


def test_suite_against_torch_prints_the_geometric_mean(tmp_path, capsys):
    pytest.importorskip("torch")
    path = tmp_path / "suite.csv"
    argv = ["--suite", "--layers", "lenet-pool1,cifar-gap,inception-1x7", "--dtype", "float32", "--batch", "2",
            "--repeat", "1", "--threads", "1", "--csv", str(path)]
    assert run(argv) == 0
    _, rows = read_csv(path)
    ratios = [float(row[6]) for row in rows]
    assert all(float(row[6]) == pytest.approx(float(row[4]) / float(row[5]), rel=0.01) for row in rows)
    line = next(line for line in capsys.readouterr().out.splitlines() if "geometric mean" in line)
    mean = float(line.split("geometric mean fast/torch ")[1].split()[0])
    assert line.startswith("1 threads:") and "over 3 rows (float32 " in line
    assert mean == pytest.approx(np.exp(np.mean(np.log(ratios))), rel=0.02)
    worst = max(range(3), key=lambda i: ratios[i])
    assert f"worst {ratios[worst]:.3g} ({rows[worst][0]} float32)" in line


def test_suite_summary_and_csv_from_rows():
    rows = [dict(layer="a", shape="conv x(1, 1, 4, 4)", dtype="float32", threads=2, fast=[0.002, 0.004],
                 torch=[0.001], agrees=True),
            dict(layer="b", shape="max pool", dtype="float64", threads=2, fast=[0.001], torch=[0.004], agrees=False)]
    assert report.suite_summary(rows) == ("2 threads: geometric mean fast/torch 0.866 over 2 rows (float32 3, "
                                          "float64 0.25); worst 3 (a float32)")
    assert report.suite_csv(rows).splitlines() == [
        "layer,shape,dtype,threads,fast ms,torch ms,fast/torch",
        'a,"conv x(1, 1, 4, 4)",float32,2,3,1,3', "b,max pool,float64,2,1,4,0.25"]
    assert report.suite_cells(rows[1])[-1] == "max pool FAST DISAGREES WITH REFERENCE"
