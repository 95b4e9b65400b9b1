import json
import shutil
import socket
import subprocess
import sys
import types

import numpy as np
import pytest

import cnnkit
from cnnkit.cli import main
from cnnkit.datasets import files
from cnnkit.datasets._download import Source

TINY = ["--epochs", "1", "--num-train", "300", "--num-val", "100", "--batch-size", "50"]


def test_info(capsys):
    from cnnkit.fast import conv

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "backend active:" in out and f"winograd kernels:   {conv.WINOGRAD_BUILD}\n" in out
    assert f"direct kernels:     {conv.DIRECT_BUILD}\n" in out


@pytest.mark.subprocess
def test_console_script_installed(tmp_path):
    out = subprocess.run([shutil.which("cnnkit"), "info"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert "openmp:             yes" in out.stdout


def test_unknown_command_is_one_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fly"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Output folder of a one-epoch run on a few built-in images."""
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_train_writes_model_history_and_plot(trained):
    assert sorted(p.name for p in trained.iterdir()) == [
        "checkpoint.npz", "curves.png", "filters.png", "history.json", "model.json", "model.npz"]
    history = json.loads((trained / "history.json").read_text())
    assert len(history["loss"]) == 4 and history["updates_per_epoch"] == 4  # 200 images / 50
    assert len(history["train_accuracy"]) == len(history["val_accuracy"]) == 1
    info = json.loads((trained / "model.json").read_text())
    assert info["dataset"] == "builtin" and info["image_shape"] == [3, 16, 16] and len(info["mean"]) == 3
    assert info["test_accuracy"] == history["test_accuracy"]
    assert (trained / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(cnnkit.models.load(trained / "model.npz"), cnnkit.models.Sequential)


@pytest.mark.slow
def test_train_prints_progress_and_test_accuracy(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path), "--model", "twolayer", "--backend", "reference",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "training twolayer" in out and "200 training, 100 validation images" in out
    assert "epoch 1/1: loss" in out and "test accuracy:" in out
    assert cnnkit.get_backend() == "reference" and cnnkit.get_num_threads() == 1


@pytest.mark.slow
@pytest.mark.parametrize("model, update_rule", [("threelayer", "sgd_momentum"), ("fc", "rmsprop")])
def test_train_other_models_and_predict_one_image(tmp_path, capsys, model, update_rule):
    assert main(["train", *TINY, "--out", str(tmp_path), "--model", model, "--update-rule", update_rule,
                 "--lr", "1e-3", "--reg", "1e-4", "--no-augment", "--schedule", "step"]) == 0
    info = json.loads((tmp_path / "model.json").read_text())
    assert info["model"] == model
    images = cnnkit.datasets.load_builtin(10, 4)["X_test"]
    np.save(tmp_path / "one.npy", images[2])
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "model.npz"), str(tmp_path / "one.npy")]) == 0
    trained = cnnkit.models.load(tmp_path / "model.npz")
    expected = trained.predict(cnnkit.datasets.normalize(images, info["mean"], info["std"]))[2]  # eval mode
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'one.npy'}: {info['classes'][expected]} (")


@pytest.mark.slow
def test_resume_continues_from_the_checkpoint(trained, tmp_path):
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    options = ["train", *TINY, "--out", str(tmp_path), "--resume"]
    options[options.index("--epochs") + 1] = "2"
    assert main(options) == 0
    history = json.loads((tmp_path / "history.json").read_text())
    first = json.loads((trained / "history.json").read_text())
    assert len(history["loss"]) == 8 and len(history["val_accuracy"]) == 2
    assert history["loss"][:4] == first["loss"]


def test_resume_without_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path), "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--resume: no checkpoint at {tmp_path}" in err


@pytest.mark.slow
def test_resume_with_other_options_is_one_line(trained, tmp_path, capsys):
    shutil.copytree(trained, tmp_path, dirs_exist_ok=True)
    assert main(["train", *TINY, "--out", str(tmp_path), "--resume", "--model", "twolayer"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cnnkit train: error: ") and err.count("\n") == 1


@pytest.mark.slow
def test_evaluate_reproduces_the_test_accuracy(trained, capsys):
    assert main(["evaluate", str(trained / "model.npz")]) == 0
    accuracy = json.loads((trained / "model.json").read_text())["test_accuracy"]
    assert f"test accuracy: {accuracy:.2%} on 2000 builtin images" in capsys.readouterr().out


def test_predict_npy_batch(trained, tmp_path, capsys):
    images = cnnkit.datasets.load_builtin(10, 3)["X_test"]
    np.save(tmp_path / "batch.npy", images)
    np.save(tmp_path / "one.npy", (images[0] * 255).astype(np.uint8))
    assert main(["predict", str(trained / "model.npz"), str(tmp_path / "batch.npy"), str(tmp_path / "one.npy"),
                 "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].startswith(f"{tmp_path / 'batch.npy'}[0]: ")
    classes = cnnkit.datasets.builtin.CLASSES
    assert all(line.count("%)") == 2 and any(f" {name} (" in line for name in classes) for line in lines)


def test_predict_image_file(trained, tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(tmp_path / "image.png")
    assert main(["predict", str(trained / "model.npz"), str(tmp_path / "image.png")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'image.png'}: ")


@pytest.mark.parametrize("argv, message", [
    (["predict", "{model}", "{tmp}/missing.npy"], "image file {tmp}/missing.npy not found"),
    (["predict", "{tmp}/none.npz", "x.npy"], "model file {tmp}/none.npz not found"),
    (["predict", "{model}", "{tmp}/wrong.npy"], r"expected an array of shape (C, H, W) or (N, C, H, W) with "
                                                r"C, H, W = 3, 16, 16 (or (H, W) for grey images); got (2, 8, 8)"),
    (["predict", "{model}", "{tmp}/text.npy"], "{tmp}/text.npy: not a .npy array file"),
    (["evaluate", "{tmp}/model.npz"], "{tmp}/model.json not found: predict, evaluate and export need the"),
    (["evaluate", "{tmp}/text.npz"], "{tmp}/text.npz: damaged or not a cnnkit-model file"),
    (["evaluate", "{tmp}/half.npz"], "{tmp}/half.npz: damaged or not a cnnkit-model file (BadZipFile: File is not"),
])
def test_predict_and_evaluate_errors_are_one_line(trained, tmp_path, capsys, argv, message):
    np.save(tmp_path / "wrong.npy", np.zeros((2, 8, 8), np.float32))
    (tmp_path / "text.npy").write_text("not numpy")
    shutil.copy(trained / "model.npz", tmp_path / "model.npz")
    (tmp_path / "text.npz").write_text("not numpy")
    (tmp_path / "half.npz").write_bytes((trained / "model.npz").read_bytes()[:1000])
    for name in ("text", "half"):
        shutil.copy(trained / "model.json", tmp_path / f"{name}.json")
    values = {"model": trained / "model.npz", "tmp": tmp_path}
    assert main([a.format(**values) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(**values) in err


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "0"], "argument --epochs: expected an int > 0, got '0'"),
    (["train", "--lr", "nan"], "argument --lr: expected a number > 0, got 'nan'"),
    (["train", "--reg", "-1"], "argument --reg: expected a number >= 0, got '-1'"),
    (["train", "--dataset", "svhn"], "argument --dataset: invalid choice: 'svhn'"),
    (["train", "--update-rule", "lbfgs"], "argument --update-rule: invalid choice: 'lbfgs'"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["predict", "model.npz"], "the following arguments are required: FILE"),
])
def test_bad_arguments_are_usage_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_too_many_validation_images_is_one_line(tmp_path, capsys):
    assert main(["train", "--num-train", "50", "--num-val", "50", "--out", str(tmp_path)]) == 1
    assert "num_val must be between 1 and 49 for 50 samples, got 50" in capsys.readouterr().err


def test_missing_dataset_files_are_one_line(tmp_path, capsys):
    assert main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"not found in {tmp_path}" in err and "--download" in err


def test_corrupt_dataset_file_is_one_line(tmp_path, capsys):
    for stem in files.IDX_FILES.values():
        (tmp_path / stem).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")  # 5 labels announced, 3 present
    assert main(["train", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "header gives shape (5,), so 13 bytes are expected, but the file holds 11" in err


def test_offline_download_is_one_line(tmp_path, capsys, monkeypatch):
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"
    monkeypatch.setitem(files.SOURCES, "cifar10", Source((url,), {files.CIFAR_ARCHIVE: "0" * 32}))
    assert main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--download"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not download cifar-10-python.tar.gz" in err
    assert "check the network connection" in err


def test_bench_forwards_its_arguments(monkeypatch, capsys):
    seen = {}

    def run(args):
        seen["repeat"] = args.repeat
        return 0

    fake = types.ModuleType("cnnkit.bench")
    fake.add_arguments = lambda parser: parser.add_argument("--repeat", type=int, default=1)
    fake.run = run
    monkeypatch.setitem(sys.modules, "cnnkit.bench", fake)
    monkeypatch.setattr(cnnkit, "bench", fake, raising=False)
    assert main(["bench", "--repeat", "3"]) == 0 and seen == {"repeat": 3}
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "usage: cnnkit bench [-h] [--repeat REPEAT]" in capsys.readouterr().out


def test_train_help_says_how_to_run_on_many_machines(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "mpiexec -n N cnnkit train" in out and "mpiexec -f hostfile -n N cnnkit train" in out
    assert "cnnkit[mpi]" in out and "--allreduce {ordered,mpi}" in out
