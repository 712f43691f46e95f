"""cpu_memory: with glibc, freed blocks stay with the process for reuse instead of being handed back and faulted in
again. Each case runs in a fresh process, since the setting is per process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rmp_zoo
from rmp_zoo.conversion import cpu_memory, network

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
glibc_only = pytest.mark.skipif(cpu_memory._LIBC is None, reason="the C library is not glibc")

BLOCK_MB, BLOCKS = 30, 3
# Three 30 MB blocks allocated and freed, ten times over. SETUP is "keep" (cpu_memory.keep_freed_memory) or "glibc
# start" (the mmap threshold fixed at glibc's starting value, 128 KB): then every block is mapped on its own and
# handed back when freed, as a simulation's activations can be in a fresh process.
PATTERN = f"""
import json, resource, sys, torch
from rmp_zoo.conversion import cpu_memory
if sys.argv[1] == "keep":
    kept = cpu_memory.keep_freed_memory(torch.device("cpu"))
else:
    kept = False
    cpu_memory._LIBC.mallopt(-3, 128 * 2**10)
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
n = {BLOCK_MB} * 2**20 // 4
per_round = []
for _ in range(10):
    before = faults()
    blocks = [torch.ones(n) for _ in range({BLOCKS})]
    del blocks
    per_round.append(faults() - before)
print(json.dumps({{"kept": kept, "faults": per_round}}))
"""


def run_pattern(setup: str, keep_env: str = "1") -> dict:
    env = {**os.environ, "RMP_ZOO_KEEP_MEMORY": keep_env}
    done = subprocess.run([sys.executable, "-c", PATTERN, setup], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_faults(result: dict) -> int:
    later = sorted(result["faults"][1:])
    return later[len(later) // 2]


@glibc_only
@pytest.mark.skipif(THP.exists() and "[always]" in THP.read_text(), reason="transparent huge pages fault 2 MB at once")
def test_freed_blocks_are_reused_without_page_faults():
    pages = BLOCKS * BLOCK_MB * 2**20 // os.sysconf("SC_PAGE_SIZE")
    kept, start = run_pattern("keep"), run_pattern("glibc start")
    assert kept["kept"]
    assert median_faults(kept) < pages / 20  # reused: (almost) no page is faulted in again
    assert median_faults(start) > pages / 2  # mapped afresh: every block is faulted in again every round


@glibc_only
def test_opting_out_changes_nothing():
    assert not run_pattern("keep", keep_env="0")["kept"]


def test_every_simulation_asks_for_it_on_its_device(monkeypatch):
    asked = []
    monkeypatch.setattr(network, "keep_freed_memory", asked.append)
    ann = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).eval()
    snn = rmp_zoo.convert(ann, [torch.randn(8, 4)])
    snn.run(torch.randn(2, 4), [2])
    snn.run(torch.randn(2, 4), [2], mode="step")
    assert asked == [torch.device("cpu")] * 2
