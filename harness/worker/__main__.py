"""``python -m harness.worker RUN_DIR``: the child process of one run (every rank of it under torchrun).

The run itself is :mod:`harness.worker.run_job`; importing it marks ``process_start`` first."""
import gc
import sys

from harness.worker.run_job import main

if __name__ == "__main__":
    code = main(sys.argv[1:])
    # The run is over and its result written. Interpreter shutdown would now have the cyclic garbage collector
    # walk every object torch, transformers and peft created: 1.2-1.7 s on 2 cores, paid by every run and every
    # rank before the parent sees the exit. Frozen, they are left to the operating system; atexit handlers
    # still run and the standard streams are still flushed.
    gc.freeze()
    sys.exit(code)
