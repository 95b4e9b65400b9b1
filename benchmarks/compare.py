"""Print the reference / fast / PyTorch comparison table (same as `cnnkit bench`), each contender alone.

    python benchmarks/compare.py [--rows A,B,C,P,Q,mnist,cifar,cifar-wide,lenet5,small,all-conv]
                                 [--dtype float32|float64|both] [--repeat 5] [--threads 2] [--quick]
                                 [--markdown] [--train-epoch DIR]
    python benchmarks/compare.py --profile mnist     # time per layer of a training step (or MODEL.npz)
    python benchmarks/compare.py --suite --csv docs/performance/suite.csv   # the broad layer suite
"""
import argparse
import sys

from cnnkit import bench
from cnnkit._runtime import prefer_short_spin

if __name__ == "__main__":
    prefer_short_spin()  # as the `cnnkit` command does
    parser = bench.add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    sys.exit(bench.run(parser.parse_args()))
