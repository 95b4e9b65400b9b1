"""Print the reference / fast / PyTorch comparison table (same as `cnnkit bench`).

    python benchmarks/compare.py [--shapes A,B,C,P,Q] [--dtype float32|float64|both] [--repeat 5] [--quick]
"""
import argparse
import sys

from cnnkit import bench

if __name__ == "__main__":
    parser = bench.add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    sys.exit(bench.run(parser.parse_args()))
