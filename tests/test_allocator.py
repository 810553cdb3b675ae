"""retain_freed_memory: large freed blocks stay with the process, so training steps stop
faulting their memory in again from the kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a glibc setting")

# In a fresh process: where glibc puts a 20 MB tensor (its own mmap, or the heap), and how many
# free bytes its heap holds once the tensor is gone.
BLOCK = """
import ctypes, json, sys, torch
from lit_celeba.base.allocator import retain_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
made = retain_freed_memory() if sys.argv[1] == "retain" else False
block = torch.empty(20 << 20, dtype=torch.uint8).fill_(1)
mmapped = libc.mallinfo2().hblkhd
del block
print(json.dumps({"made": made, "mmapped": mmapped, "heap_free": libc.mallinfo2().fordblks}))
"""

# A recipe training step in a fresh process with the setting: the page faults of 20 steps.
STEPS = """
import json, resource, torch
import torch.nn.functional as F
from lit_celeba.base.allocator import retain_freed_memory
from lit_celeba.models.nets import RecipeCNN
assert retain_freed_memory()
torch.manual_seed(0)
net = RecipeCNN()
optimizer = torch.optim.Adam(net.parameters())
images, targets = torch.rand(32, 3, 64, 64), torch.ones(32, 1)
def step():
    loss = F.binary_cross_entropy_with_logits(net(images), targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(json.dumps({"faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def run(script: str, *args: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=environ | {"OMP_NUM_THREADS": "1"} | env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def test_a_freed_20_mb_block_stays_in_the_heap() -> None:
    default, retained = run(BLOCK, "default"), run(BLOCK, "retain")
    assert retained["made"] and not default["made"]
    # glibc's default puts the block in a mapping of its own, unmapped again when freed ...
    assert default["mmapped"] >= 20 << 20 and default["heap_free"] < 20 << 20, default
    # ... with the setting it comes from the heap and stays there for the next step.
    assert retained["mmapped"] < 20 << 20 and retained["heap_free"] >= 20 << 20, retained


def test_training_steps_take_almost_no_page_faults() -> None:
    # A step allocates about 100 MB (25,000 pages); measured with glibc's defaults, the 20 steps
    # took 1,500 to 200,000 faults depending on the process, with the setting 20 to 5,000.
    assert run(STEPS)["faults"] < 20 * 1000


def test_the_users_own_malloc_settings_win() -> None:
    assert not run(BLOCK, "retain", MALLOC_TRIM_THRESHOLD_="1000000")["made"]
    assert not run(BLOCK, "retain", GLIBC_TUNABLES="glibc.malloc.trim_threshold=1000000")["made"]
    # Tunables of other parts of glibc leave the setting on.
    assert run(BLOCK, "retain", GLIBC_TUNABLES="glibc.rtld.optional_static_tls=2048")["made"]
