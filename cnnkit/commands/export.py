"""`cnnkit export MODEL OUT.onnx`: a trained model as ONNX, with its input normalisation folded in."""
from pathlib import Path

from cnnkit.commands._options import load_trained


def add_parser(commands):
    export = commands.add_parser("export", help="write a trained model as an ONNX file",
                                 description="Write MODEL (from cnnkit train) as an ONNX graph that takes images "
                                             "as cnnkit predict reads them (float32 in [0, 1], N x C x H x W) "
                                             "and returns class scores; the training set's normalisation is "
                                             "part of the graph. Needs the onnx package (cnnkit[onnx]).")
    export.add_argument("model", type=Path, metavar="MODEL", help="model.npz written by cnnkit train")
    export.add_argument("output", type=Path, metavar="OUT.onnx", help="ONNX file to write")
    export.set_defaults(run=run)


def run(args):
    from cnnkit.onnx import OPSET, export

    model, info = load_trained(args.model)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    export(model, args.output, info["image_shape"], mean=info["mean"], std=info["std"], classes=info["classes"])
    print(f"wrote {args.output} (ONNX opset {OPSET}): input 'images' float32 "
          f"(N, {', '.join(map(str, info['image_shape']))}) in [0, 1], output 'scores' "
          f"(N, {len(info['classes'])}) for the classes {', '.join(info['classes'])}")
    return 0
