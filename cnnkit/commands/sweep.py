"""`cnnkit sweep`: search the options of `cnnkit train` on a Dask cluster with Optuna.

The options are train's own (built from its parser, so new train options come for free),
each given as a value, a LOW:HIGH log-uniform range (numeric options) or an A,B,C choice.
A remote scheduler is tls:// with this client's certificate (--tls-*); a plain tcp:// one
beyond loopback needs --insecure. The search itself is cnnkit.sweep.Sweep.
"""
import argparse
from pathlib import Path

from cnnkit._arguments import POSITIVE_INT
from cnnkit.sweep import PRUNERS, SAMPLERS, Sweep, dimension, train_actions

TRAIN_OPTION = "train_option:"  # prefix of the parsed train options' dests, apart from the sweep's own


def add_parser(commands):
    sweep = commands.add_parser(
        "sweep", help="search train's options on a Dask cluster (Optuna)",
        description="Search the options of `cnnkit train`: each trial trains as `cnnkit train` does and is scored "
                    "by validation accuracy; the best trial is scored on the test split once, at the end. Needs "
                    'pip install "cnnkit[sweep]".',
        epilog="Example: cnnkit sweep --trials 16 --epochs 3 --lr 1e-4:1e-1 --reg 1e-6:1e-2 --out sweep-out")
    sweep.add_argument("--trials", type=POSITIVE_INT, default=16,
                       help="total trials for the folder; rerunning the command runs the missing ones (default: 16)")
    sweep.add_argument("--out", type=Path, default=Path("sweep-out"),
                       help="sweep folder: study.db, trials.csv, sweep.png, best/ (default: ./sweep-out)")
    sweep.add_argument("--scheduler", metavar="tls://HOST:PORT",
                       help="a running Dask scheduler (`dask scheduler`, `dask worker`) that speaks TLS; default: a "
                            "local cluster on 127.0.0.1 that speaks TLS with a throwaway certificate")
    sweep.add_argument("--tls-ca-file", type=Path, metavar="CA.pem",
                       help="the cluster's CA certificate (default: Dask's config distributed.comm.tls.ca-file)")
    sweep.add_argument("--tls-cert", type=Path, metavar="CERT.pem",
                       help="this client's certificate, signed by the CA (`cnnkit certs` writes client.pem; "
                            "default: Dask's config distributed.comm.tls.client.cert)")
    sweep.add_argument("--tls-key", type=Path, metavar="KEY.pem",
                       help="this client's private key (default: Dask's config distributed.comm.tls.client.key)")
    sweep.add_argument("--insecure", action="store_true",
                       help="accept a plain tcp:// scheduler on another machine, which lets anyone who reaches it "
                            "run code on its workers (tcp:// on 127.0.0.1 needs no flag)")
    sweep.add_argument("--workers", type=POSITIVE_INT,
                       help="workers of the local cluster (default: cores // --threads, one trial each)")
    sweep.add_argument("--sampler", choices=SAMPLERS, default="random", help="Optuna sampler (default: random)")
    sweep.add_argument("--pruner", choices=PRUNERS, default="halving",
                       help="stops trials falling behind after an epoch: successive halving, median or none "
                            "(default: halving)")
    options = sweep.add_argument_group(
        "options of cnnkit train", "Each is a value (fixed), LOW:HIGH (numeric options: sampled log-uniformly) or "
                                   "A,B,C (a choice); those not given keep train's defaults, but --threads, the kernel "
                                   "threads of each trial, is 1 unless given.")
    for dest, action in train_actions().items():
        if action.nargs == 0:
            options.add_argument(*action.option_strings, action="store_true", dest=TRAIN_OPTION + dest,
                                 default=argparse.SUPPRESS, help=action.help)
        else:
            options.add_argument(*action.option_strings, type=_checked(action), dest=TRAIN_OPTION + dest,
                                 default=argparse.SUPPRESS, metavar=dest.upper(), help=action.help)
    sweep.set_defaults(run=run)


def _checked(action):
    """argparse type: the text itself, once cnnkit.sweep.dimension accepts it for the train option."""
    def check(text):
        try:
            dimension(action, text)
        except ValueError as error:  # "--lr: what was wrong": argparse names the option itself
            raise argparse.ArgumentTypeError(str(error).partition(": ")[2]) from None
        return text
    return check


def run(args):
    space = {dest.removeprefix(TRAIN_OPTION): value for dest, value in vars(args).items()
             if dest.startswith(TRAIN_OPTION)}
    Sweep(space, args.out, args.trials, scheduler=args.scheduler, workers=args.workers, sampler=args.sampler,
          pruner=args.pruner, tls_ca_file=args.tls_ca_file, tls_cert=args.tls_cert, tls_key=args.tls_key,
          insecure=args.insecure).run()
    return 0
