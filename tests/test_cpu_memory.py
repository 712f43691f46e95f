"""cpu_memory: with glibc, freed blocks are reused instead of being handed back and faulted in again; with
RMP_ZOO_KEEP_MEMORY=0 glibc keeps its defaults. Each case runs in a fresh process, since the setting is per process."""
import json
import os
import subprocess
import sys

import pytest

from rmp_zoo.conversion import cpu_memory

pytestmark = pytest.mark.skipif(cpu_memory._LIBC is None, reason="the C library is not glibc")

BLOCK_MB = 24
# Two 24 MB blocks allocated and freed, ten times over: glibc's default trim threshold (twice the largest block it has
# freed, here 48 MB) is reached when both are free, so it hands them back every time and faults them in again.
PATTERN = f"""
import json, resource, torch
from rmp_zoo.conversion import cpu_memory
kept = cpu_memory.keep_freed_memory(torch.device("cpu"))
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
n = {BLOCK_MB} * 2**20 // 4
a = torch.ones(n); del a
per_round = []
for _ in range(10):
    before = faults(); a = torch.ones(n); b = torch.ones(n); del a, b; per_round.append(faults() - before)
print(json.dumps({{"kept": kept, "faults": per_round}}))
"""


def run_pattern(keep: str) -> dict:
    env = {**os.environ, "RMP_ZOO_KEEP_MEMORY": keep}
    done = subprocess.run([sys.executable, "-c", PATTERN], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_faults(result: dict) -> int:
    later = sorted(result["faults"][1:])
    return later[len(later) // 2]


def test_freed_blocks_are_reused_without_page_faults():
    pages = 2 * BLOCK_MB * 2**20 // os.sysconf("SC_PAGE_SIZE")
    kept, trimmed = run_pattern("1"), run_pattern("0")
    assert kept["kept"] and not trimmed["kept"]
    assert median_faults(kept) < pages / 20  # reused: (almost) no page is faulted in again
    assert median_faults(trimmed) > pages / 2  # glibc's default: both blocks handed back and faulted in every round

