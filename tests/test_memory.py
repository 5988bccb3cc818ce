"""npctr._memory: glibc's malloc tuned at import so the layers' large temporaries are reused, not
page-faulted in on every call; it can be turned off, and it leaves a process's own choice alone."""
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

import npctr
from npctr import _memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def configured_in_subprocess(**env):
    code = "import npctr, npctr._memory as m; print(m.configured)"
    environ = {k: v for k, v in os.environ.items() if k not in ("NPCTR_MALLOC_TUNING", "MALLOC_MMAP_THRESHOLD_",
                                                                 "MALLOC_TRIM_THRESHOLD_")}
    environ.update(env, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, check=True)
    return out.stdout.strip() == "True"


glibc = pytest.mark.skipif(not configured_in_subprocess(), reason="not glibc: nothing to tune")


@glibc
def test_opt_out_and_the_process_own_thresholds_are_respected():
    assert not configured_in_subprocess(NPCTR_MALLOC_TUNING="0")
    assert not configured_in_subprocess(MALLOC_MMAP_THRESHOLD_="131072")
    assert not configured_in_subprocess(MALLOC_TRIM_THRESHOLD_="131072")


@pytest.mark.skipif(not _memory.configured, reason="malloc tuning off in this process")
def test_a_layer_call_does_not_page_fault_its_temporaries_in():
    """Before the tuning a LocalActivationUnit forward at batch 256, T 50 took ~2,000 minor page
    faults (its (B*T, H) temporaries mmap-ed afresh on every call); with it, a few."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((256, 1, 16)).astype(np.float32)
    k = rng.standard_normal((256, 50, 16)).astype(np.float32)
    lau = npctr.LocalActivationUnit((80, 40), "sigmoid", dtype="float32")
    for _ in range(3):
        lau.forward([q, k])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        lau.forward([q, k])
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
    assert faults < 200, faults
