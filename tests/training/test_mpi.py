"""Data-parallel training on real `mpiexec -n 2` jobs on 127.0.0.1 (the mpi extra's MPICH)."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import MPI_LOOPBACK

from cnnkit.cli import main
from cnnkit.trainer import Trainer

mpi4py = pytest.importorskip("mpi4py", reason="needs the mpi extra: pip install 'cnnkit[mpi]'")


def find_mpiexec():
    """The mpiexec of the MPI that mpi4py loads: beside this Python, beside its base install, or on PATH."""
    for folder in (Path(sys.executable).parent, Path(sys.base_prefix) / "bin"):
        if (folder / "mpiexec").is_file():
            return str(folder / "mpiexec")
    return shutil.which("mpiexec")


MPIEXEC = find_mpiexec()
pytestmark = [pytest.mark.mpi, pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec beside Python or on PATH")]
TIMEOUT = 240  # seconds for one job; a hang fails the test instead of stalling it
# 251 images, 50 for validation: 201 to train in batches of 50, so the last batch (1 image) leaves rank 1 none
SMALL = ["--num-train", "251", "--num-val", "50", "--batch-size", "50", "--width", "4", "--dropout", "0.3",
         "--schedule", "constant", "--threads", "1"]
TINY = [*SMALL, "--hidden", "16"]
VGG = [*SMALL, "--model", "vgg", "--epochs", "1"]  # batchnorm after each conv; 5 updates


def mpiexec(*command, cwd, ranks=2):
    """Run `mpiexec -n ranks -hosts 127.0.0.1 command` (Python's own for "python") with a timeout."""
    command = [sys.executable if part == "python" else part for part in command]
    env = {**os.environ, **MPI_LOOPBACK, "OMP_NUM_THREADS": "1"}
    return subprocess.run([MPIEXEC, "-n", str(ranks), "-hosts", "127.0.0.1", *command], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=cwd, env=env)


def train_on_two_ranks(tmp_path, out, *options, base=TINY):
    job = mpiexec("python", "-m", "cnnkit.cli", "train", *base, "--out", str(out), *options, cwd=tmp_path)
    assert job.returncode == 0, job.stderr
    return job


def arrays(folder):
    with np.load(folder / "model.npz", allow_pickle=False) as model:
        return {key: model[key] for key in model.files}


def assert_same_model(a, b, rtol=0.0, atol=0.0):
    a, b = arrays(a), arrays(b)
    assert a.keys() == b.keys()
    for key in a:
        if a[key].dtype.kind == "f":
            np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=atol, err_msg=key)
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The same options trained by one process, two epochs."""
    out = tmp_path_factory.mktemp("one") / "out"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("reduction", ["ordered", "mpi"])
def test_two_ranks_rerun_bit_for_bit_and_agree_with_one_process(tmp_path, one_process, reduction):
    first, second = tmp_path / "first", tmp_path / "second"
    job = train_on_two_ranks(tmp_path, first, "--epochs", "2", "--allreduce", reduction)
    train_on_two_ranks(tmp_path, second, "--epochs", "2", "--allreduce", reduction)
    assert_same_model(first, second)
    assert_same_model(first, one_process, rtol=1e-3, atol=2e-5)  # float32 rounding over 10 updates
    history, alone = (json.loads((out / "history.json").read_text()) for out in (first, one_process))
    assert len(history["loss"]) == len(alone["loss"]) == 2 * 5  # ceil(201 / 50) steps per epoch, on every rank
    assert history["val_accuracy"] == alone["val_accuracy"]  # counts summed over the ranks' halves
    assert "on 2 ranks" in job.stdout and job.stdout.count("test accuracy") == 1  # rank 0 prints


def test_evaluate_on_one_process_gives_the_test_accuracy_of_two_ranks(tmp_path, capsys):
    train_on_two_ranks(tmp_path, tmp_path / "out", "--epochs", "1")
    accuracy = json.loads((tmp_path / "out" / "model.json").read_text())["test_accuracy"]
    assert main(["evaluate", str(tmp_path / "out" / "model.npz")]) == 0
    assert f"test accuracy: {accuracy:.2%} on 2000 builtin images" in capsys.readouterr().out


@pytest.mark.parametrize("first_ranks", [1, 2])
def test_resume_with_another_number_of_ranks(tmp_path, one_process, first_ranks):
    out = tmp_path / "out"
    if first_ranks == 1:
        assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
        train_on_two_ranks(tmp_path, out, "--epochs", "2", "--resume")
    else:
        train_on_two_ranks(tmp_path, out, "--epochs", "1")
        assert main(["train", *TINY, "--epochs", "2", "--out", str(out), "--resume"]) == 0
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 10
    assert_same_model(out, one_process, rtol=1e-3, atol=2e-5)


def test_sync_batchnorm_on_two_ranks_trains_as_one_process_and_reruns_bit_for_bit(tmp_path):
    alone, synced, again, apart = (tmp_path / name for name in ("alone", "synced", "again", "apart"))
    assert main(["train", *VGG, "--out", str(alone)]) == 0
    for out in (synced, again):
        train_on_two_ranks(tmp_path, out, "--sync-batchnorm", base=VGG)
    assert_same_model(synced, again)
    assert_same_model(synced, alone, rtol=1e-4, atol=1e-6)  # float32 rounding over 5 updates
    history, one = (json.loads((out / "history.json").read_text()) for out in (synced, alone))
    np.testing.assert_allclose(history["loss"], one["loss"], rtol=1e-5)
    train_on_two_ranks(tmp_path, apart, base=VGG)  # each rank's own statistics: other updates
    with pytest.raises(AssertionError):
        assert_same_model(apart, alone, rtol=1e-3, atol=1e-4)


SYNCED_RESNET = """
import sys
import numpy as np
from mpi4py import MPI
from cnnkit.models import resnet
from cnnkit.trainer import Trainer

def trained(**options):  # batches of 7 over 3 ranks: 3, 2, 2; the last batch (2 images) leaves rank 2 none
    rng = np.random.default_rng(0)
    data = {"X_train": rng.standard_normal((23, 3, 8, 8)).astype(np.float32), "y_train": rng.integers(0, 4, 23)}
    model = resnet((3, 8, 8), 4, depth=8, width=4, seed=1)  # batchnorm in Sequential and Residual containers
    trainer = Trainer(model, data, update_rule="adam", optim_config={"learning_rate": 1e-2}, batch_size=7,
                      num_epochs=2, seed=2, verbose=False, **options).train()
    return {**model.params, **model.buffers}

synced = trained(comm=MPI.COMM_WORLD, sync_batchnorm=True)
if MPI.COMM_WORLD.Get_rank() == 0:
    np.savez(sys.argv[1], **synced)
    np.savez(sys.argv[2], **trained())
"""


def test_sync_batchnorm_in_residual_blocks_on_three_uneven_ranks_trains_as_one_process(tmp_path):
    synced, alone = tmp_path / "synced.npz", tmp_path / "alone.npz"
    job = mpiexec("python", "-c", SYNCED_RESNET, str(synced), str(alone), cwd=tmp_path, ranks=3)
    assert job.returncode == 0, job.stderr
    with np.load(synced) as ranks, np.load(alone) as one:
        assert ranks.files == one.files and any("running_var" in key for key in one.files)
        for key in one.files:
            np.testing.assert_allclose(ranks[key], one[key], rtol=1e-4, atol=1e-6, err_msg=key)


SUMS = """
import numpy as np
from mpi4py import MPI
from cnnkit.distributed import DataParallel

comm = MPI.COMM_WORLD
for reduction in ("ordered", "mpi"):
    for length in (1, 2, 7, 1000):
        mine = np.random.default_rng([comm.Get_rank(), length]).standard_normal(length).astype(np.float32)
        rows = [np.random.default_rng([r, length]).standard_normal(length).astype(np.float32)
                for r in range(comm.Get_size())]
        in_rank_order = rows[0].copy()
        for row in rows[1:]:
            in_rank_order += row
        total = DataParallel(comm, reduction).sum(mine)
        check = np.array_equal if reduction == "ordered" else np.allclose
        assert check(total, in_rank_order), (reduction, length, total, in_rank_order)
print("summed")
"""


def test_ordered_sums_are_the_rank_order_sums_on_every_rank(tmp_path):
    job = mpiexec("python", "-c", SUMS, cwd=tmp_path, ranks=3)
    assert job.returncode == 0, job.stderr
    assert job.stdout.count("summed") == 3  # one line per rank; the ranks' lines may interleave


FAILING_RANK = """
import os, signal, sys
import numpy as np
from mpi4py import MPI
from cnnkit.models import TwoLayerNet
from cnnkit.trainer import Trainer

comm = MPI.COMM_WORLD
rng = np.random.default_rng(0)
y = rng.integers(0, 3, 90)
data = {"X_train": (np.eye(3, 6)[y] + rng.standard_normal((90, 6))).astype(np.float32), "y_train": y}

def fail(trainer):
    if trainer.epoch == 2 and comm.Get_rank() == 1:
        if sys.argv[2] == "raise":
            raise RuntimeError("rank 1 broke down")
        os.kill(os.getpid(), signal.SIGKILL)

model = TwoLayerNet(6, hidden_dim=8, num_classes=3, rng=0)
Trainer(model, data, batch_size=16, num_epochs=50, seed=1, checkpoint=sys.argv[1], callbacks=[fail],
        verbose=False, comm=comm).train()
"""


@pytest.mark.parametrize("failure", ["raise", "kill"])
def test_a_failing_rank_ends_the_job_and_the_checkpoint_stays_intact(tmp_path, failure):
    checkpoint = tmp_path / "checkpoint.npz"
    job = mpiexec("python", "-c", textwrap.dedent(FAILING_RANK), str(checkpoint), failure, cwd=tmp_path)
    assert job.returncode != 0
    if failure == "raise":
        assert job.stderr.count("rank 1 broke down") == 1, job.stderr
    from cnnkit.models import TwoLayerNet

    data = {"X_train": np.zeros((90, 6), np.float32), "y_train": np.zeros(90, np.int64)}
    resumed = Trainer(TwoLayerNet(6, hidden_dim=8, num_classes=3, rng=0), data, batch_size=16, num_epochs=50,
                      resume=checkpoint, verbose=False)
    assert resumed.epoch in (1, 2)  # the end of the job may stop rank 0 while it writes epoch 2's (atomically)
