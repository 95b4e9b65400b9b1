"""`cnnkit bench`: the backends' speed against each other and PyTorch (see cnnkit.bench)."""


def add_parser(commands):
    bench = commands.add_parser("bench", add_help=False, help="compare the backends' speed (cnnkit bench --help)")
    bench.set_defaults(run=run, passes_extra_args=True)


def run(args):
    import argparse

    from cnnkit import bench

    parser = argparse.ArgumentParser(prog="cnnkit bench", description="Compare the backends' speed.")
    bench.add_arguments(parser)
    return bench.run(parser.parse_args(args.extra_args))
