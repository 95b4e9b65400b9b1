"""`cnnkit bench`: reference vs fast vs PyTorch, each timed alone in its own process; `--profile`
times each layer of a training step (see cnnkit.bench)."""


def add_parser(commands):
    bench = commands.add_parser("bench", add_help=False,
                                help="compare the backends' speed, or profile a training step (cnnkit bench --help)")
    bench.set_defaults(run=run, passes_extra_args=True)


def run(args):
    import argparse

    from cnnkit import bench

    parser = argparse.ArgumentParser(
        prog="cnnkit bench", description="Time ops and training steps on the reference, the fast backend and "
        "PyTorch, each contender alone in a process of its own; or, with --profile, each layer of a training step.")
    bench.add_arguments(parser)
    return bench.run(parser.parse_args(args.extra_args))
