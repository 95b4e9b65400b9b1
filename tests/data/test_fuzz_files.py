"""Seeded mutations of a valid file of every format cnnkit reads.

Each case is a valid file damaged one way (truncated, bits flipped, header bytes scrambled,
junk appended, replaced by random bytes, or a size field set to a huge claim) and read
through the public API. It must end in acceptance (the result is what a file of that
format means: arrays of valid shape, dtype and range, or the very arrays written where a
checksum protects them) or in the format's documented error, and the reader must not
allocate (tracemalloc) more than the file could hold. `pytest -s` prints the counts.
"""
import contextlib
import gzip
import io
import json
import re
import struct
import tracemalloc
import zipfile
import zlib
from collections import Counter

import numpy as np
import pytest
from helpers import idx_bytes, py2_pickle, write_cifar_dataset

import cnnkit
from cnnkit import layers as nn
from cnnkit.commands._options import load_trained
from cnnkit.commands.predict import read_images
from cnnkit.datasets import load_cifar10, load_mnist
from cnnkit.models import Sequential, load

pytestmark = pytest.mark.slow  # hundreds of damaged files per format
CASES = 300  # per format, split between the variants of a format
DEFLATE_RATIO = 1032  # the most a byte of deflate (gzip, zip, PNG) can expand to
SLACK = 4 << 20  # bytes a read may allocate besides what the file holds (objects, first-use caches)
IMAGE_SHAPE = (3, 8, 8)


# ---------------------------------------------------------------- mutations

def truncate(raw, rng):
    return raw[:rng.integers(len(raw))]


def flip_bits(raw, rng):
    data = bytearray(raw)
    for position in rng.integers(len(raw) * 8, size=rng.integers(1, 9)):
        data[position // 8] ^= 1 << (position % 8)
    return bytes(data)


def scramble_header(raw, rng):
    data = bytearray(raw)
    for position in rng.integers(min(64, len(raw)), size=rng.integers(1, 5)):
        data[position] = rng.integers(256)
    return bytes(data)


def append_junk(raw, rng):
    return raw + rng.bytes(rng.integers(1, 65))


def random_bytes(raw, rng):
    return rng.bytes(rng.integers(len(raw) + 1))


def claim_huge(raw, rng):
    """A 4-byte field near either end (where headers and zip directories are) set to a huge value."""
    near_end = len(raw) - int(rng.integers(4, min(64, len(raw)) + 1))
    offset = int(rng.integers(min(64, len(raw) - 4))) if rng.random() < 0.5 else near_end
    return raw[:offset] + struct.pack("<I", rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 0x10000000])) + raw[offset + 4:]


MUTATIONS = (truncate, flip_bits, scramble_header, append_junk, random_bytes, claim_huge)


def mutants(raw, seed, special, cases):
    """`cases` mutations of raw, drawn with `seed`; `special` adds format-aware ones to the mix."""
    rng = np.random.default_rng(seed)
    kinds = MUTATIONS + tuple(special)
    for _ in range(cases):
        yield kinds[rng.integers(len(kinds))](raw, rng)


# ---------------------------------------------------------------- running cases

def fuzz(raw, path, read, accept, error, seed, most=1, special=(), cases=None):
    """Counts of accepted / documented error / other over mutations of raw written to path.

    `most` is how many bytes a byte of the file can hold (DEFLATE_RATIO when compressed).
    A read may allocate 16 times what the file can hold (its arrays converted to float),
    plus SLACK.
    """
    counts, others, cases = Counter(), [], cases or CASES
    tracemalloc.start()
    try:
        for data in mutants(raw, seed, special, cases):
            path.write_bytes(data)
            outcome, note = run_case(path, read, accept, error, bound=16 * most * max(len(data), 1) + SLACK)
            counts[outcome] += 1
            if note:
                others.append(note)
    finally:
        tracemalloc.stop()
    print(f"\n{path.name}: {dict(counts)}")
    assert not others, f"{len(others)} of {cases} cases: {Counter(others).most_common(5)}"
    return counts


def run_case(path, read, accept, error, bound):
    """("accepted" or "documented error", None), or ("other", what happened)."""
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    try:
        result = read(path)
    except error:
        outcome, note = "documented error", None
    except Exception as other:  # any other exception is what this test looks for
        outcome, note = "other", f"{type(other).__name__}: {str(other)[:150]}"
    else:
        accepted = accept(result)
        outcome, note = ("accepted", None) if accepted else ("other", "accepted a file that does not mean what it says")
    allocated = tracemalloc.get_traced_memory()[1] - start
    if allocated > bound:
        return "other", f"allocated {allocated} bytes, more than the {bound} the file could hold"
    return outcome, note


def valid_dataset(data, n_train, n_test, image_shape):
    """True when data is a loader's dict: float images in [0, 1] of image_shape, N int labels in [0, 10)."""
    return all(data[f"X_{split}"].shape == (n, *image_shape) and data[f"X_{split}"].dtype == np.float32
               and 0 <= data[f"X_{split}"].min() and data[f"X_{split}"].max() <= 1
               and data[f"y_{split}"].shape == (n,) and data[f"y_{split}"].dtype == np.int64
               and data[f"y_{split}"].min() >= 0 and data[f"y_{split}"].max() < 10
               for split, n in (("train", n_train), ("test", n_test))) and len(data["classes"]) == 10


# ---------------------------------------------------------------- datasets

def idx_claiming(raw, rng):
    """An IDX file whose header claims a huge dimension."""
    ndim = raw[3]
    dim = 4 + 4 * int(rng.integers(max(ndim, 1)))
    return raw[:dim] + struct.pack(">I", rng.choice([0xFFFFFFFF, 1 << 28, 1 << 31])) + raw[dim + 4:]


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("stem", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
def test_idx_files(tmp_path, rng, compress, stem):
    images, labels = rng.integers(0, 256, (6, 8, 8), dtype=np.uint8), rng.integers(0, 10, 6, dtype=np.uint8)
    for name, array in [("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels),
                        ("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)]:
        (tmp_path / name).write_bytes(idx_bytes(array))
    target = tmp_path / stem
    raw = plain = idx_bytes(images if "images" in stem else labels)
    special = [idx_claiming]
    if compress:
        target.unlink()
        target = tmp_path / f"{stem}.gz"
        special = [lambda _, rng: gzip.compress(idx_claiming(plain, rng), mtime=0)]
        raw = gzip.compress(plain, mtime=0)
    fuzz(raw, target, lambda _: load_mnist(tmp_path), lambda data: valid_dataset(data, 6, 6, (1, 8, 8)),
         cnnkit.DatasetError, seed=len(stem) + compress, most=DEFLATE_RATIO if compress else 1, special=special,
         cases=CASES // 2)


def pickle_claiming(raw, rng):
    """A CIFAR pickle whose largest BINSTRING claims more bytes than follow it."""
    start = raw.find(b"T" + struct.pack("<I", 4 * 3072))
    return raw[:start + 1] + struct.pack("<I", rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 4 * 3072 + 1])) + raw[start + 5:]


@pytest.mark.parametrize("name", ["data_batch_2", "test_batch"])
def test_cifar_batches(tmp_path, rng, name):
    write_cifar_dataset(tmp_path, rng)
    path = tmp_path / name
    fuzz(path.read_bytes(), path, lambda _: load_cifar10(tmp_path),
         lambda data: valid_dataset(data, 20, 4, (3, 32, 32)), cnnkit.DatasetError, seed=len(name),
         special=[pickle_claiming], cases=CASES // 2)


def test_cifar_meta(tmp_path, rng):
    write_cifar_dataset(tmp_path, rng, n=1)
    path = tmp_path / "batches.meta"
    fuzz(path.read_bytes(), path, lambda _: load_cifar10(tmp_path), lambda data: valid_dataset(data, 5, 1, (3, 32, 32)),
         cnnkit.DatasetError, seed=7)


def test_cifar_meta_with_other_names(tmp_path, rng):
    write_cifar_dataset(tmp_path, rng, n=1)
    names = {b"label_names": [b"\xff\xfe"] * 10}
    (tmp_path / "batches.meta").write_bytes(b"\x80\x02" + py2_pickle(names) + b".")
    with pytest.raises(cnnkit.DatasetError, match=r"batches\.meta: class names are not UTF-8"):
        load_cifar10(tmp_path)
    (tmp_path / "batches.meta").write_bytes(b"\x80\x02" + py2_pickle({b"label_names": [1] * 10}) + b".")
    with pytest.raises(cnnkit.DatasetError, match=r"batches.meta: expected 10 names \(bytes\)"):
        load_cifar10(tmp_path)


# ---------------------------------------------------------------- models and checkpoints

def small_model():
    return Sequential([nn.Conv2d(3, 4, 3, padding=1, rng=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                       nn.Linear(4 * 4 * 4, 10, rng=1)], input_shape=IMAGE_SHAPE)


def rezipped(mutate):
    """A mutation of one member of an .npz, zipped again with valid checksums."""
    def mutation(raw, rng):
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()}
        names = sorted(members)
        name = names[rng.integers(len(names))]
        members[name] = mutate(members[name], rng)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            for key, value in members.items():
                archive.writestr(key, value)
        return out.getvalue()
    return mutation


def npy_claiming(member, rng):
    """A .npy member whose header claims a huge first dimension."""
    return re.sub(rb"'shape': \((\d*)", lambda m: b"'shape': (" + str(rng.choice([2**31, 2**40, 2**62])).encode(),
                  member, count=1)


NPZ_SPECIAL = [rezipped(mutation) for mutation in MUTATIONS] + [rezipped(npy_claiming)]


def same_arrays(a, b):
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def test_model_npz(tmp_path):
    model = small_model()
    model.save(tmp_path / "model.npz")
    raw = (tmp_path / "model.npz").read_bytes()
    # zip checksums protect the arrays: a file that loads holds the arrays saved, or (with
    # checksums recomputed) arrays of the shapes and dtypes its architecture gives
    counts = fuzz(raw, tmp_path / "model.npz", load, lambda loaded: isinstance(loaded, Sequential),
                  cnnkit.ModelFileError, seed=11, special=NPZ_SPECIAL)
    assert counts["documented error"] > CASES // 2


def test_model_npz_raw_mutations_never_change_the_arrays(tmp_path):
    model = small_model()
    model.save(tmp_path / "model.npz")
    fuzz((tmp_path / "model.npz").read_bytes(), tmp_path / "model.npz", load,
         lambda loaded: same_arrays(loaded.params, model.params), cnnkit.ModelFileError, seed=12, cases=CASES // 2)


def test_model_json(tmp_path):
    small_model().save(tmp_path / "model.npz")
    info = {"dataset": "builtin", "classes": [f"c{i}" for i in range(10)], "image_shape": list(IMAGE_SHAPE),
            "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "test_accuracy": 0.5}
    raw = json.dumps(info, indent=2).encode()

    def accept(result):
        _, read = result
        return (len(read["image_shape"]) == 3 and read["mean"].shape == read["std"].shape == (read["image_shape"][0],)
                and np.isfinite(read["mean"]).all() and (read["std"] > 0).all() and len(read["classes"]) >= 1)
    fuzz(raw, tmp_path / "model.json", lambda _: load_trained(tmp_path / "model.npz"), accept,
         cnnkit.ModelFileError, seed=13)


def test_checkpoint_npz(tmp_path, rng):
    data = {"X_train": rng.random((8, *IMAGE_SHAPE), np.float32), "y_train": rng.integers(0, 10, 8)}
    options = {"update_rule": "adam", "batch_size": 4, "seed": 0, "verbose": False}
    path = tmp_path / "checkpoint.npz"
    cnnkit.Trainer(small_model(), data, num_epochs=1, checkpoint=path, **options).train()
    saved = cnnkit.Trainer(small_model(), data, num_epochs=2, resume=path, **options)

    def resume(checkpoint):
        trainer = cnnkit.Trainer(small_model(), data, num_epochs=2, resume=checkpoint, **options)
        # a resumed trainer must be able to go on; optimiser state changed to huge numbers
        # (with checksums recomputed) may make the loss diverge, which train() reports
        with np.errstate(all="ignore"), contextlib.suppress(FloatingPointError):
            trainer.train()
        return trainer

    def accept(trainer):
        expected = small_model().params
        return trainer.epoch >= 1 and all(value.shape == expected[key].shape and value.dtype == expected[key].dtype
                                          for key, value in trainer.model.params.items())

    counts = fuzz(path.read_bytes(), path, resume, accept, cnnkit.CheckpointError, seed=14, special=NPZ_SPECIAL,
                  cases=CASES * 2 // 3)  # each accepted case trains an epoch
    assert counts["documented error"] > 100 and saved.epoch == 1


# ---------------------------------------------------------------- predict's inputs

def png_claiming(raw, rng):
    """A PNG whose IHDR (with a valid CRC) claims a huge width and height."""
    size = struct.pack(">II", *rng.choice([30000, 60000, 1 << 20], size=2))
    ihdr = b"IHDR" + size + raw[24:29]
    return raw[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + raw[33:]


def valid_images(images, count=1, shape=IMAGE_SHAPE):
    return (images.shape[1:] == shape and (count is None or len(images) == count) and images.dtype == np.float32
            and np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1)


@pytest.mark.parametrize("mode, suffix", [("RGB", ".png"), ("RGBA", ".png"), ("P", ".png"), ("I;16", ".png"),
                                          ("RGB", ".jpg"), ("L", ".gif")])
def test_images(tmp_path, rng, mode, suffix):
    Image = pytest.importorskip("PIL.Image")
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (12, 10), dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).convert(mode)
    out = io.BytesIO()
    image.save(out, format={".png": "PNG", ".jpg": "JPEG", ".gif": "GIF"}[suffix])
    special = [png_claiming] if suffix == ".png" else []
    fuzz(out.getvalue(), tmp_path / f"image{suffix}", lambda path: read_images(path, IMAGE_SHAPE), valid_images,
         ValueError, seed=len(mode) + len(suffix), most=DEFLATE_RATIO * 8, special=special, cases=CASES // 3)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_npy(tmp_path, rng, dtype):
    images = rng.integers(0, 256, (3, *IMAGE_SHAPE)).astype(dtype) / (1 if dtype == np.uint8 else 255)
    out = io.BytesIO()
    np.save(out, images.astype(dtype))
    fuzz(out.getvalue(), tmp_path / "images.npy", lambda path: read_images(path, IMAGE_SHAPE),
         lambda read: valid_images(read, count=None), ValueError, seed=21, special=[npy_claiming], cases=CASES // 2)


# ---------------------------------------------------------------- what the fuzzing first found

def test_flipped_gzip_bits_are_a_dataset_error_with_the_cause(tmp_path):
    raw = bytearray(gzip.compress(idx_bytes(np.arange(64, dtype=np.uint8).reshape(4, 4, 4)), mtime=0))
    raw[12] ^= 0x40  # inside the deflate stream
    (tmp_path / "images.gz").write_bytes(bytes(raw))
    with pytest.raises(cnnkit.DatasetError, match=r"images\.gz: corrupt gzip data") as caught:
        cnnkit.datasets._formats.read_idx(tmp_path / "images.gz")
    assert isinstance(caught.value.__cause__, (zlib.error, OSError, EOFError))


def test_model_with_unknown_compression_is_a_model_file_error(tmp_path):
    small_model().save(tmp_path / "model.npz")
    raw = bytearray((tmp_path / "model.npz").read_bytes())
    directory = raw.find(b"PK\x01\x02")
    raw[directory + 10] = 99  # compression method 99: zipfile raises NotImplementedError
    (tmp_path / "model.npz").write_bytes(bytes(raw))
    with pytest.raises(cnnkit.ModelFileError, match=r"model\.npz: damaged or not a cnnkit-model file") as caught:
        load(tmp_path / "model.npz")
    assert isinstance(caught.value.__cause__, NotImplementedError)


def test_checkpoint_with_pickled_objects_is_a_checkpoint_error_not_numpys_advice(tmp_path, rng):
    data = {"X_train": rng.random((4, *IMAGE_SHAPE), np.float32), "y_train": rng.integers(0, 10, 4)}
    path = tmp_path / "checkpoint.npz"
    cnnkit.Trainer(small_model(), data, num_epochs=1, checkpoint=path, verbose=False).train()
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, member in members.items():
            if name != "history/loss.npy":
                archive.writestr(name, member)
        with archive.open("history/loss.npy", "w") as out:
            np.lib.format.write_array(out, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(cnnkit.CheckpointError, match=r"checkpoint\.npz: damaged .*unsupported dtype object") as caught:
        cnnkit.Trainer(small_model(), data, resume=path, verbose=False)
    assert "unsafely" not in str(caught.value) and isinstance(caught.value.__cause__, ValueError)
