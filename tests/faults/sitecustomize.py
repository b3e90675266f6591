"""Fault injection for tests/test_sweep.py. Python imports this file at start-up in every process of
a test's sweep (the test puts this folder on PYTHONPATH, which worker processes inherit):

    HARNESS_FAULT_SCALE=0.7   runs with scale 0.7 raise a RuntimeError inside harness.lab.run.record
    HARNESS_FAULT_SLEEP=0.5   every run takes 0.5 s longer (time to kill a sweep part-way)
"""

import os

if os.environ.get("HARNESS_FAULT_SCALE") or os.environ.get("HARNESS_FAULT_SLEEP"):
    import time

    import harness.lab.run

    _record = harness.lab.run.record

    def record(run, progress=False):
        if run.scale == float(os.environ.get("HARNESS_FAULT_SCALE", "nan")):
            raise RuntimeError(f"injected fault at scale={run.scale}")
        time.sleep(float(os.environ.get("HARNESS_FAULT_SLEEP", "0")))
        return _record(run, progress)

    harness.lab.run.record = record
