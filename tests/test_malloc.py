"""retain_freed_memory: a freed large buffer is reused, not mapped and faulted in again."""

import subprocess
import sys

import pytest

from tests.conftest import REPO

# Allocate, touch and free a 64 MiB tensor ten times; print the minor page faults that took.
PROBE = """
import resource, sys, torch
from dyt_llama.malloc import retain_freed_memory
ok = retain_freed_memory() if sys.argv[1] == "retain" else None
for _ in range(8):  # the first few are faulted in either way, while the heap grows to hold them
    torch.empty(1 << 24).fill_(1.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.empty(1 << 24).fill_(1.0)
print(ok, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    ok, retained = faults("retain")
    _, default = faults("default")
    assert ok == "True"
    pages = 10 * (1 << 26) // 4096  # ten 64 MiB buffers in 4 KiB pages
    assert default > pages / 2, default  # glibc's default maps each one afresh
    assert retained < pages / 20, retained
