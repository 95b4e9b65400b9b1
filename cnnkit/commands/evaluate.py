"""`cnnkit evaluate MODEL`: test accuracy of a trained model on its dataset."""
from pathlib import Path

import numpy as np

from cnnkit.commands._options import add_data_options, add_runtime_options, load_trained


def add_parser(commands):
    evaluate = commands.add_parser("evaluate", help="test accuracy of a trained model on its dataset",
                                   description="Accuracy of MODEL (from cnnkit train) on its dataset's test split.")
    evaluate.add_argument("model", type=Path, metavar="MODEL", help="model.npz written by cnnkit train")
    add_data_options(evaluate)
    add_runtime_options(evaluate)
    evaluate.set_defaults(run=run)


def run(args):
    from cnnkit.datasets import load_dataset, normalize

    model, info = load_trained(args.model)
    dataset = load_dataset(info["dataset"], args.data_dir, download=args.download)
    X = normalize(dataset["X_test"], info["mean"], info["std"])
    accuracy = np.mean(model.predict(X) == dataset["y_test"])
    print(f"test accuracy: {accuracy:.2%} on {len(X)} {info['dataset']} images")
    return 0
