import numpy as np
import pytest

from cnnkit.cli import build_parser, main
from cnnkit.recipes import (
    ARCHITECTURE,
    DATASET_CHOICES,
    MODEL_CHOICES,
    RECIPES,
    WIDTHS,
    architecture,
    build_model,
    describe_recipe,
    make_trainer,
    recipe,
    vgg,
)
from cnnkit.training import setup

IMAGE_SHAPES = {"builtin": (3, 16, 16), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
TINY = ["--num-train", "120", "--num-val", "40"]


def parse(*options):
    return build_parser().parse_args(["train", *options])


def test_every_dataset_has_a_recipe_of_train_options():
    dests = vars(parse())
    assert sorted(RECIPES) == sorted(DATASET_CHOICES)
    assert all(set(options) <= set(dests) for options in RECIPES.values())


@pytest.mark.parametrize("dataset", DATASET_CHOICES)
def test_each_recipe_builds_and_trains_one_step(dataset, rng):
    options = RECIPES[dataset]
    shape = IMAGE_SHAPES[dataset]
    model = build_model(options["model"], shape, 10, reg=options["reg"],
                        **architecture(options))
    data = {"X_train": rng.standard_normal((8, *shape)).astype(np.float32), "y_train": rng.integers(0, 10, 8)}
    before = {key: value.copy() for key, value in model.params.items()}
    trainer = make_trainer(model, data, dataset, options["update_rule"], options["lr"], options["schedule"],
                           batch_size=8, epochs=1, seed=0, warmup_steps=options["warmup"], verbose=False).train()
    assert trainer.iteration == 1 and np.isfinite(trainer.loss_history[0])
    assert all(not np.array_equal(before[key], model.params[key]) for key in before)
    assert model.predict(data["X_train"]).shape == (8,)


def test_options_override_the_recipe_and_the_rest_come_from_it():
    args = parse("--epochs", "1", "--width", "4", "--lr", "0.01", "--warmup", "0", *TINY)
    model, trainer, data, info = setup(args, verbose=False)
    builtin = RECIPES["builtin"]
    assert (args.epochs, args.width, args.lr, args.warmup) == (1, 4, 0.01, 0)
    assert (args.model, args.batch_size, args.schedule, args.reg) == (
        builtin["model"], builtin["batch_size"], builtin["schedule"], builtin["reg"])
    assert model.params["0.weight"].shape[0] == 4 and trainer.num_epochs == 1 and trainer.warmup_steps == 0
    assert trainer.optim_configs["0.weight"]["learning_rate"] == 0.01 and info["model"] == "convnet"
    assert "X_test" in data and len(trainer.X_train) == 80


def test_hidden_sets_the_convnet_s_linear_layer():
    model, _, _, _ = setup(parse("--hidden", "40", "--width", "4", *TINY), verbose=False)
    assert [value.shape for key, value in model.params.items() if value.ndim == 2] == [(4 * 2 * 4 * 4, 40), (40, 10)]
    assert build_model("convnet", (1, 16, 16), 10).params["7.weight"].shape == (512, 128)


def test_the_recipe_warmup_reaches_the_trainer():
    args = parse("--dataset", "builtin", "--model", "vgg", "--warmup", "7", *TINY)
    model, trainer, _, _ = setup(args, verbose=False)
    assert trainer.warmup_steps == 7 and model.params["0.weight"].shape[0] == WIDTHS["vgg"]


def test_another_model_than_the_recipe_s_keeps_its_own_width_and_dropout():
    assert recipe("cifar10")["model"] == "vgg" and recipe("cifar10", "vgg") == RECIPES["cifar10"]
    other = recipe("cifar10", "twolayer")
    assert not set(ARCHITECTURE) & set(other) and other["epochs"] == RECIPES["cifar10"]["epochs"]


def test_help_lists_every_recipe(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(describe_recipe(dataset) in help_text for dataset in RECIPES)
    assert "--width" in help_text and "--warmup UPDATES" in help_text and "--dropout" in help_text


@pytest.mark.parametrize("model", MODEL_CHOICES)
def test_width_sets_the_size_of_every_model(model):
    small, large = (build_model(model, (1, 16, 16), 10, width=width).num_params for width in (8, 16))
    assert small < large
    assert build_model(model, (1, 16, 16), 10).num_params == build_model(
        model, (1, 16, 16), 10, width=WIDTHS[model]).num_params


@pytest.mark.parametrize("model, options, message", [
    ("threelayer", {"dropout": 0.5}, "model threelayer has no dropout"),
    ("twolayer", {"dropout": 0.5}, "model twolayer has no dropout"),
    ("convnet", {"depth": 2}, "depth \\(conv layers per stage\\) is vgg's and resnet's \\(6n \\+ 2 layers\\), "
                              "not convnet's"),
    ("resnet", {"depth": 12}, "a CIFAR ResNet's depth is 6n \\+ 2 with n >= 1 \\(8, 14, 20, 32, ...\\), got 12"),
    ("resnet", {"dropout": 0.5}, "model resnet has no dropout"),
    ("vgg", {"hidden": 64}, "hidden \\(units of the linear layer after the convs\\) is convnet's, not vgg's"),
])
def test_options_a_model_does_not_have_are_errors(model, options, message):
    with pytest.raises(ValueError, match=message):
        build_model(model, (1, 16, 16), 10, **options)


@pytest.mark.parametrize("shape, stages", [((1, 28, 28), 2), ((3, 32, 32), 3), ((3, 16, 16), 2), ((1, 7, 9), 0)])
@pytest.mark.parametrize("depth", [1, 2])
def test_vgg_pools_while_the_image_is_at_least_8_pixels(shape, stages, depth, rng):
    model = vgg(shape, 10, width=4, depth=depth, dropout=0.5)
    conv_filters = [value.shape[0] for key, value in model.params.items() if value.ndim == 4]
    assert conv_filters == [4 * 2**i for i in range(stages) for _ in range(depth)]
    assert model.loss(rng.standard_normal((2, *shape)).astype(np.float32)).shape == (2, 10)


@pytest.mark.parametrize("options, message", [
    (["--dropout", "1"], "p must be a probability in [0, 1), got 1.0"),
    (["--model", "convnet", "--depth", "2"],
     "depth (conv layers per stage) is vgg's and resnet's (6n + 2 layers), not convnet's"),
])
def test_options_the_model_cannot_take_are_one_line(options, message, tmp_path, capsys):
    assert main(["train", *options, *TINY, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
