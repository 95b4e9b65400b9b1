"""The `cnnkit` command: registers the subcommands of cnnkit.commands and runs one.

Errors a user can cause (bad options, missing or corrupt files, no network) end the
command with one line on stderr and exit status 1; argparse usage errors exit with 2.
"""
import argparse
import contextlib
import importlib
import sys

from threadpoolctl import threadpool_limits

import cnnkit
from cnnkit._runtime import prefer_short_spin
from cnnkit._version import __version__
from cnnkit.commands import COMMANDS

ERRORS = (OSError, ValueError, ImportError, ArithmeticError)  # what a user's input or machine can cause


def build_parser():
    """The argparse parser of `cnnkit` with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="cnnkit", description="Train convolutional networks on the CPU.")
    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"cnnkit.commands.{name}").add_parser(commands)
    return parser


@contextlib.contextmanager
def _runtime(args):
    """Apply --backend and --threads (kernels' OpenMP threads and BLAS threads) for the command."""
    if getattr(args, "backend", None):
        cnnkit.set_backend(args.backend)
    threads = getattr(args, "threads", None)
    if threads:
        cnnkit.set_num_threads(threads)
    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def main(argv=None):
    """Run the `cnnkit` command with argv (default: sys.argv[1:]); returns the exit status."""
    prefer_short_spin()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "passes_extra_args", False):
        args.extra_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        with _runtime(args):
            return args.run(args)
    except KeyboardInterrupt:
        print("cnnkit: interrupted", file=sys.stderr)
        return 130
    except ERRORS as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"cnnkit {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
