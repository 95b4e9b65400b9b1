"""Pictures of what a model learned (cnnkit.plots) and the commands that draw them: train, show, evaluate."""
import json

import numpy as np
import pytest
from PIL import Image

from cnnkit import layers as nn
from cnnkit._files import atomic_write
from cnnkit.cli import main
from cnnkit.commands.evaluate import confusion_matrix
from cnnkit.datasets import load_builtin
from cnnkit.models import LinearSVM, Sequential, TwoLayerNet, load
from cnnkit.plots import plot_confusion, plot_image_grid, plot_learned

CLASSES = ["disc", "ring", "square"]


def assert_png(path, min_size=(200, 100)):
    """path holds a complete PNG of at least min_size pixels."""
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG" and image.size >= min_size


def captions(figure):
    return [axes.get_title() for axes in figure.axes if axes.images]


def drawn(figure):
    return [axes.images[0].get_array() for axes in figure.axes if axes.images]


def scaled(image):
    return (image - image.min()) / np.ptp(image)


def test_conv_filters_in_rgb_each_scaled_to_its_range(tmp_path):
    model = Sequential([nn.Conv2d(3, 5, (3, 2), rng=0), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 14 * 15, 3, rng=1)])
    figure = plot_learned(model, tmp_path / "filters.png", (3, 16, 16), CLASSES)
    assert captions(figure) == ["0", "1", "2", "3", "4"]
    assert figure.get_suptitle() == "first conv layer: 5 filters of 3x3x2"
    weight = model.params["0.weight"]
    for index, image in enumerate(drawn(figure)):
        np.testing.assert_allclose(image, scaled(weight[index].transpose(1, 2, 0)), rtol=1e-6)
    assert_png(tmp_path / "filters.png")


@pytest.mark.parametrize("channels, expected", [(1, ["0", "1"]), (2, ["0.0", "0.1", "1.0", "1.1"])])
def test_filters_of_other_channel_counts_are_grey(tmp_path, channels, expected):
    model = Sequential([nn.Conv2d(channels, 2, 3, rng=0)])
    figure = plot_learned(model, tmp_path / "filters.png", (channels, 8, 8))
    assert captions(figure) == expected
    assert all(image.shape == (3, 3) for image in drawn(figure))


def test_linear_classifier_is_drawn_as_class_templates(tmp_path):
    model = Sequential([nn.Flatten(), nn.Linear(3 * 4 * 5, 3, rng=0)])
    figure = plot_learned(model, tmp_path / "templates.png", (3, 4, 5), CLASSES)
    assert captions(figure) == CLASSES
    assert figure.get_suptitle().startswith("class templates")
    template = model.params["1.weight"][:, 2].reshape(3, 4, 5).transpose(1, 2, 0)
    np.testing.assert_allclose(drawn(figure)[2], scaled(template), rtol=1e-6)


@pytest.mark.slow
def test_linear_svm_is_drawn_as_class_templates(tmp_path):
    data = load_builtin(60, 1)
    classifier = LinearSVM().fit(data["X_train"].reshape(60, -1), data["y_train"], num_epochs=1)
    figure = plot_learned(classifier, tmp_path / "templates.png", (3, 16, 16), list(data["classes"]))
    assert captions(figure) == list(data["classes"])


@pytest.mark.slow
def test_hidden_layer_is_drawn_as_units_the_first_64(tmp_path):
    model = TwoLayerNet(1 * 6 * 6, hidden_dim=100, num_classes=3, rng=0)
    figure = plot_learned(model, tmp_path / "units.png", (1, 6, 6), CLASSES)
    assert captions(figure) == [str(k) for k in range(64)]
    assert figure.get_suptitle() == "first layer's weights, one image per unit (the first 64 of 100)"
    assert_png(tmp_path / "units.png")


@pytest.mark.slow
def test_maxout_pieces_are_captioned_unit_dot_piece(tmp_path):
    model = Sequential([nn.Maxout(1 * 3 * 3, 2, pieces=3, rng=0), nn.Linear(2, 3)])
    figure = plot_learned(model, tmp_path / "units.png", (1, 3, 3), CLASSES)
    assert captions(figure) == ["0.0", "0.1", "0.2", "1.0", "1.1", "1.2"]
    assert figure.get_suptitle() == "first layer's weights, one image per unit.piece"
    np.testing.assert_allclose(drawn(figure)[4], scaled(model.params["0.weight"][:, 1, 1].reshape(3, 3)), rtol=1e-6)


def test_loaded_model_is_drawn_with_its_saved_weights(tmp_path):
    model = Sequential([nn.Conv2d(1, 2, 3, rng=0)])
    model.params["0.weight"] = np.arange(18, dtype=np.float32).reshape(2, 1, 3, 3) ** 2
    model.save(tmp_path / "model.npz")
    figure = plot_learned(load(tmp_path / "model.npz"), tmp_path / "filters.png", (1, 5, 5))
    np.testing.assert_allclose(drawn(figure)[1], scaled(model.params["0.weight"][1, 0]))


@pytest.mark.parametrize("model, shape, message", [
    (Sequential([nn.Flatten(), nn.ReLU()]), (1, 2, 2), "has no Conv2d, Linear or Maxout layer"),
    (Sequential([nn.Linear(12, 3)]), (1, 2, 2), r"takes 12 features, not images of shape \(1, 2, 2\)"),
    (Sequential([nn.Linear(12, 3)]), (12,), r"image_shape must be \(C, H, W\), got \(12,\)"),
    (LinearSVM(), (1, 2, 2), "LinearSVM has no weights to draw"),
])
def test_what_cannot_be_drawn_is_a_clear_error(tmp_path, model, shape, message):
    with pytest.raises(ValueError, match=message):
        plot_learned(model, tmp_path / "filters.png", shape)
    assert list(tmp_path.iterdir()) == []


def test_image_grid_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match=r"expected images of shape \(K, C, H, W\), got \(2, 3\)"):
        plot_image_grid(np.zeros((2, 3)), tmp_path / "grid.png")
    with pytest.raises(ValueError, match="expected 2 labels, got 1"):
        plot_image_grid(np.zeros((2, 1, 3, 3)), tmp_path / "grid.png", labels=["a"])


def test_constant_image_is_drawn_mid_grey(tmp_path):
    figure = plot_image_grid(np.ones((1, 1, 2, 2)), tmp_path / "grid.png")
    np.testing.assert_array_equal(drawn(figure)[0], np.full((2, 2), 0.5))


def test_confusion_matrix_counts_true_rows_predicted_columns():
    matrix = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 0, 2]), 4)
    np.testing.assert_array_equal(matrix, [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])


def test_confusion_plot_names_classes_and_shows_counts(tmp_path):
    matrix = np.array([[5, 1, 0], [2, 7, 0], [0, 0, 0]])
    figure = plot_confusion(matrix, CLASSES, tmp_path / "confusion.png")
    axes = figure.axes[0]
    assert [label.get_text() for label in axes.get_xticklabels()] == CLASSES
    assert [label.get_text() for label in axes.get_yticklabels()] == CLASSES
    assert sorted(text.get_text() for text in axes.texts) == ["1", "2", "5", "7"]
    assert axes.get_title() == "confusion matrix: 80.00% correct"
    assert_png(tmp_path / "confusion.png")
    with pytest.raises(ValueError, match=r"expected a \(2, 2\) matrix for 2 classes, got \(3, 3\)"):
        plot_confusion(matrix, CLASSES[:2], tmp_path / "other.png")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    (tmp_path / "filters.png").write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "filters.png") as file:
        file.write(b"half")
        raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["filters.png"]
    assert (tmp_path / "filters.png").read_bytes() == b"old"


# The commands

TINY = ["--epochs", "1", "--num-train", "300", "--num-val", "100", "--batch-size", "50"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Output folder of a one-epoch run of a linear-first model on a few built-in images."""
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *TINY, "--model", "fc", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
def test_train_writes_filters_png(trained):
    assert_png(trained / "filters.png", (600, 600))


@pytest.mark.slow
def test_show_prints_the_summary_and_draws_into_out(trained, tmp_path, capsys):
    assert main(["show", str(trained / "model.npz"), "--out", str(tmp_path / "pictures")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("FullyConnectedNet: input (N, 3, 16, 16), softmax loss")
    assert "(0) Linear(in_features=768, out_features=256, bias=True)  (N, 256)" in out
    assert "trained on builtin (10 classes: disc, ring, square," in out
    assert out.endswith(f"wrote {tmp_path / 'pictures' / 'filters.png'}\n")
    assert_png(tmp_path / "pictures" / "filters.png", (600, 600))


def test_show_a_model_saved_from_python(tmp_path, capsys):
    Sequential([nn.Conv2d(1, 4, 3, rng=0), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)], input_shape=(1, 8, 8)).save(
        tmp_path / "conv.npz")
    TwoLayerNet(12, 5, 2).save(tmp_path / "flat.npz")
    assert main(["show", str(tmp_path / "conv.npz")]) == 0
    assert capsys.readouterr().out.endswith(f"wrote {tmp_path / 'filters.png'}\n")
    assert_png(tmp_path / "filters.png")
    (tmp_path / "filters.png").unlink()
    assert main(["show", str(tmp_path / "flat.npz")]) == 0
    assert f"no pictures: {tmp_path / 'flat.json'} (from cnnkit train) is missing" in capsys.readouterr().out
    assert not (tmp_path / "filters.png").exists()


@pytest.mark.slow
def test_evaluate_prints_per_class_accuracy_and_the_confusion_matrix(trained, capsys):
    assert main(["evaluate", str(trained / "model.npz")]) == 0
    lines = capsys.readouterr().out.splitlines()
    info = json.loads((trained / "model.json").read_text())
    assert lines[0] == f"test accuracy: {info['test_accuracy']:.2%} on 2000 builtin images"
    assert lines[1].split() == ["class", "accuracy", "correct", "/", "images"]
    assert [line.split()[0] for line in lines[2:12]] == info["classes"]
    assert lines[12] == "confusion matrix (rows: true class, columns: predicted class)"
    assert lines[13].split()[:3] == ["disc", "ring", "squar"]
    rows = [line.split() for line in lines[14:24]]
    assert [row[0] for row in rows] == info["classes"]
    counts = np.array([row[1:] for row in rows], dtype=int)
    assert counts.sum() == 2000 and np.trace(counts) == round(info["test_accuracy"] * 2000)
    assert lines[24] == f"wrote {trained / 'confusion.png'}"
    assert_png(trained / "confusion.png", (500, 400))


@pytest.mark.parametrize("command", ["show", "evaluate"])
def test_show_and_evaluate_errors_are_one_line(tmp_path, capsys, command):
    assert main([command, str(tmp_path / "none.npz")]) == 1
    assert capsys.readouterr().err == f"cnnkit {command}: error: model file {tmp_path / 'none.npz'} not found\n"
    (tmp_path / "bad.npz").write_text("not a model")
    (tmp_path / "bad.json").write_text('{"mean": [0], "std": [1], "image_shape": [1, 2, 2], "classes": ["a"]}')
    assert main([command, str(tmp_path / "bad.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"cnnkit {command}: error: {tmp_path / 'bad.npz'}: ") and err.count("\n") == 1
