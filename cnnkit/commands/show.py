"""`cnnkit show MODEL`: a trained model's layers, output shapes and parameters, and filters.png."""
from pathlib import Path

from cnnkit.commands._options import load_trained


def add_parser(commands):
    show = commands.add_parser("show", help="summarise a trained model and draw what it learned",
                               description="Print MODEL's layers, output shapes and parameter counts, and draw "
                                           "its first layer (filters or class templates) as filters.png.")
    show.add_argument("model", type=Path, metavar="MODEL", help="model.npz written by cnnkit train or Network.save")
    show.add_argument("--out", type=Path, help="folder for filters.png (default: the model's folder)")
    show.set_defaults(run=run)


def run(args):
    from cnnkit.plots import plot_learned

    model, info = load_trained(args.model, require_info=False)
    image_shape = info["image_shape"] if info else model.input_shape
    print(model.summary(image_shape))
    if info:
        accuracy = info.get("test_accuracy")
        print(f"trained on {info['dataset']} ({len(info['classes'])} classes: {', '.join(info['classes'])})"
              + ("" if accuracy is None else f", test accuracy {accuracy:.2%}"))
    if image_shape is None or len(image_shape) != 3:
        print(f"no pictures: {args.model.with_suffix('.json')} (from cnnkit train) is missing and the model "
              "does not record its input image shape")
        return 0
    out = args.out or args.model.parent
    out.mkdir(parents=True, exist_ok=True)
    plot_learned(model, out / "filters.png", image_shape, info["classes"] if info else None)
    print(f"wrote {out / 'filters.png'}")
    return 0
