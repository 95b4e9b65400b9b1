"""The `cnnkit` subcommands, one module each with `add_parser(commands)` and `run(args)`.

cnnkit.cli registers the modules named in COMMANDS, in this order.
"""
COMMANDS = ("train", "evaluate", "predict", "show", "export", "sweep", "certs", "bench", "info")
