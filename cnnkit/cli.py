"""The `cnnkit` command."""
import argparse
import sys

from cnnkit import __version__


def _info(args):
    from cnnkit import show_config
    show_config()
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="cnnkit", description="Train convolutional networks on the CPU.")
    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = commands.add_parser("info", help="show version, backends, threads and BLAS")
    info.set_defaults(run=_info)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
