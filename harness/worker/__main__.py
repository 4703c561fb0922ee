"""``python -m harness.worker RUN_DIR``: the child process of one run (every rank of it under torchrun).

The run itself is :mod:`harness.worker.run_job`; importing it marks ``process_start`` first."""
import sys

from harness.worker.run_job import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
