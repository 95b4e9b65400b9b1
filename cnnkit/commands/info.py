"""`cnnkit info`: version, backends, threads and BLAS."""
from cnnkit import show_config


def add_parser(commands):
    info = commands.add_parser("info", help="show version, backends, threads and BLAS")
    info.set_defaults(run=run)


def run(args):
    show_config()
    return 0
