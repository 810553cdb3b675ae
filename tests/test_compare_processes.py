"""The processes ``compare`` starts: a signal to compare (Ctrl-C, ``kill``, a closed terminal)
stops its runs and what they started, and its jobs share the CPU cores unless the user chose.
docs/bad_input.md points at the tests here by name."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import child_processes, survivors

_RUN_WITH_A_CHILD = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print("[epoch] started", flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="lists the processes in /proc")
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])  # fmt: skip
def test_a_signal_to_compare_stops_its_runs_and_what_they_started(stop, tmp_path) -> None:
    # Before: Ctrl-C or kill stopped compare and left its fit (and the fit's own processes)
    # running, writing into a folder that the next compare deleted.
    import threading

    from lit_celeba.commands.children import Children, Stopped, stopping_children_on_signals

    children, lines = Children(), []
    already = set(child_processes(os.getpid(), all_levels=True))
    previous = signal.getsignal(stop)
    worker = threading.Thread(target=children.run, daemon=True,
                              args=([sys.executable, "-c", _RUN_WITH_A_CHILD], tmp_path / "log",
                                    dict(os.environ), lines.append))  # fmt: skip
    with pytest.raises(Stopped) as stopped, stopping_children_on_signals(children):
        worker.start()
        deadline = time.monotonic() + 30
        while not lines:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        running = set(child_processes(os.getpid(), all_levels=True)) - already
        os.kill(os.getpid(), stop)
        time.sleep(30)  # the handler raises before this ends
    assert stopped.value.signum == stop
    assert len(running) >= 2 and not survivors(list(running), within_s=1.0)
    assert signal.getsignal(stop) == previous


def test_jobs_share_the_cpu_cores_unless_the_user_chose(monkeypatch) -> None:
    # Before: --jobs 3 on 2 cores started three runs that each used both cores (261 s an epoch
    # instead of 45 s on real faces).
    from lit_celeba.commands import children

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(children, "cpu_cores", lambda: 8)
    assert [children.threads_per_job(jobs) for jobs in (1, 2, 3, 8, 16)] == [None, 4, 2, 1, 1]
    assert children.job_environment(2, 1, None)["OMP_NUM_THREADS"] == "4"
    on_gpus = children.job_environment(2, 1, ["0", "1"])
    assert on_gpus["CUDA_VISIBLE_DEVICES"] == "1" and "OMP_NUM_THREADS" not in on_gpus
    assert "OMP_NUM_THREADS" not in children.job_environment(1, 0, None)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own: left as it is
    assert children.job_environment(4, 0, None)["OMP_NUM_THREADS"] == "3"
