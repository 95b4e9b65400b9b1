"""`python -m cnnkit.bench JOB`: the benchmark's worker process (see cnnkit.bench.worker)."""
import sys

from cnnkit.bench.worker import main

main(sys.argv[1:])
