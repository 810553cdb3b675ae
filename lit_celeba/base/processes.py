"""Processes: whether one still runs; child processes that die with their parent
(:func:`die_with_parent`); a DDP rank's clean end (:func:`leave_process_group`) and the end
of one whose peers ended first (:func:`rank_left_by_its_peers`); and a folder
lock that the processes started under it share (:class:`FolderLock`)."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import sys
from pathlib import Path

import torch.distributed as dist

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# The process id of the ``compare`` that started this command (see die_with_starter).
PARENT_ENV = "LIT_CELEBA_PARENT_PID"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (also when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but belongs to someone else
    return True


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Have Linux send ``sig`` to this process when its parent dies, even by SIGKILL
    (``prctl(PR_SET_PDEATHSIG)``); end at once if the parent has died already, before the request
    took effect. Elsewhere a no-op but for that check."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent_pid:
        os._exit(1)


def pool_worker_init(parent_pid: int) -> None:
    """The ``initializer`` of a forked process pool: the worker dies with its parent, however
    the parent dies (:func:`die_with_parent`). The fork also copied the parent's Python signal
    handlers (Lightning's SIGTERM handler only sets a flag): a worker ends on SIGTERM, and leaves
    Ctrl-C to the parent, which stops the pool."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def die_with_starter() -> None:
    """:func:`die_with_parent` for a command started by ``compare``, which names itself in
    :data:`PARENT_ENV`; taken out of the environment, so that the processes this one starts
    (DDP ranks) do not compare their parent with it."""
    parent = os.environ.pop(PARENT_ENV, "")
    if parent.isdigit():
        die_with_parent(int(parent))


def leave_process_group() -> None:
    """Destroy the default process group, if this process joined one, before Python exits.

    Lightning's DDP strategy leaves it alive at the end of a command (a user may go on using it).
    Left to interpreter finalization, gloo's worker threads sometimes abort the process
    ("terminate called without an active exception", SIGABRT) after the command had finished
    its work: on this 2-core machine, 6 of 30 ``torchrun ... test`` runs while two other
    processes kept both cores busy (none of 32 with this call), and once in CI. PyTorch does
    not do this at exit itself (pytorch#179291 proposed it and was abandoned).

    Only for a command that ended well: with a rank that failed while the others still wait in a
    collective, destroying the group can hang (NCCL's communicator destruction; torchtitan
    destroys it only on success for this reason, pytorch/torchtitan#1342). Lightning registers
    its own (private ``_destroy_dist_connection``) at exit for NCCL only, not for gloo."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# What gloo says to the ranks still waiting when another rank has ended (measured: a DDP fit
# whose rank 0 refused its data root; rank 1 died in Lightning's barrier with the first).
_PEER_ENDED = ("Connection closed by peer", "Connection reset by peer")


def rank_left_by_its_peers(err: BaseException) -> int | None:
    """This process's rank when ``err`` is a collective failing because another rank of its
    process group ended first (whose own message says why); None otherwise, and on rank 0."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        return None
    return dist.get_rank() if any(text in str(err) for text in _PEER_ENDED) else None


class FolderLock:
    """An exclusive ``flock`` on a folder itself, held until released or until every process
    holding its descriptor has ended, even by SIGKILL; it adds no file to the folder.

    Not ``filelock`` (which the cache uses): that locks a file it creates, and closes its
    descriptor in forked children on purpose. Here the children keep it: a run's DataLoader
    workers, and the commands ``compare`` starts (``subprocess``'s ``pass_fds=[lock.fd]``), so
    that the folder stays locked while any process that writes into it runs.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.fd: int | None = None

    def acquire(self, wait: bool = False) -> bool:
        """Take the lock; without ``wait``, False at once if another process holds it."""
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BaseException:  # BlockingIOError: held; or interrupted while waiting
            os.close(fd)
            if wait:
                raise
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def holders(self) -> list[int]:
        """The processes that hold a lock on the folder (from ``/proc/locks``: the one that took
        it, which may have ended while a process it started still holds it); [] if unknown."""
        try:
            inode = os.stat(self.folder).st_ino
            lines = Path("/proc/locks").read_text().splitlines()
        except OSError:
            return []
        pids = []
        for line in lines:
            fields = line.split()
            # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:567 0 EOF"
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
                pids.append(int(fields[4]))
        return sorted(set(pids))


def describe_holders(lock: FolderLock) -> str:
    """``process 1234`` (``, which has ended``), for a message about a held :class:`FolderLock`."""
    pids = lock.holders()
    if not pids:
        return "another process"
    return ", ".join(
        f"process {pid}" + ("" if process_alive(pid) else " (ended; a process it started holds it)")
        for pid in pids
    )
