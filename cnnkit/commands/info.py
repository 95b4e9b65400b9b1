"""`cnnkit info`: version, backends, threads and BLAS."""


def add_parser(commands):
    info = commands.add_parser("info", help="show version, backends, threads and BLAS")
    info.set_defaults(run=run)


def run(args):
    from cnnkit import show_config

    show_config()
    return 0
