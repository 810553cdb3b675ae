"""Checkpoint saves that survive a crash: write a temporary file, fsync, rename over the old one."""


import contextlib
import errno

try:
    import resource  # Unix only
except ImportError:  # pragma: no cover
    resource = None  # type: ignore[assignment]
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO

from lit_celeba.base.errors import CheckpointError
from lit_celeba.base.files import atomic_write
from lit_celeba.checkpoints.load import load_checkpoint

# torch.save's own writer reports a failed write (a full disk among others) as a RuntimeError
# "[enforce fail at inline_container.cc:...] ... PytorchStreamWriter failed writing file ...";
# through a Python file object it is an OSError. Either way: the disk, not the checkpoint.
_WRITE_FAILED = ("PytorchStreamWriter failed writing", "file write failed", "unexpected pos")
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO)

# ckpt_path values that name no file: Lightning resolves them itself.


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that never leaves a half-written checkpoint and never unpickles code.

    A save goes through :func:`lit_celeba.base.files.atomic_write`: to ``.NAME.PID.RANDOM.tmp``
    next to the target, flushed to disk, then renamed over the target (``os.replace`` is atomic on
    POSIX and Windows). Temporaries left by a process that was killed mid-save are removed on the
    next save.

    Not Lightning's own save (``TorchCheckpointIO`` -> ``lightning_fabric``'s ``_atomic_save``, an
    fsspec transaction; read in pytorch-lightning 2.6.6 and fsspec 2026.9.0): it writes the
    temporary with ``tempfile.mkstemp()``, in the system's temporary folder, and commits with
    ``shutil.move``. Where that folder is another file system (a tmpfs ``/tmp``), the move is a
    copy into the target itself: with ``TMPDIR`` on tmpfs and the checkpoint on ext4, a save
    stopped mid-copy left ``last.ckpt`` truncated (1 of 8 MB, "failed finding central directory")
    and the previous checkpoint gone. It never fsyncs, and a full disk is a bare ``OSError`` about
    a temporary file elsewhere, not the message below.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            # Remote storage: fsspec's own transaction is the best available.
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        written = 0
        try:
            with atomic_write(path, "wb") as fh:
                try:
                    torch.save(checkpoint, fh)
                except BaseException:
                    with contextlib.suppress(OSError, ValueError):
                        written = fh.tell()
                    raise
        except BaseException as err:
            if _write_failed(err):
                raise _cannot_save(path, err, written) from None
            raise

    def load_checkpoint(
        self,
        path: _PATH,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, map_location, weights_only)
        # None means "not chosen": choose the safe way whatever torch's default is.
        return load_checkpoint(path, map_location, weights_only=weights_only is not False)


def _write_failed(err: BaseException) -> bool:
    if isinstance(err, OSError):
        return err.errno in _DISK_ERRNOS
    return isinstance(err, RuntimeError) and any(text in str(err) for text in _WRITE_FAILED)


def _cannot_save(path: Path, err: BaseException, written: int = 0) -> CheckpointError:
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0] if resource else -1
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "the disk is full"
    elif (isinstance(err, OSError) and err.errno == errno.EFBIG) or 0 <= limit <= written:
        shown = f" ({limit} bytes)" if limit >= 0 else ""
        reason = f"the file reached the largest size this process may write{shown}, set with " \
            "`ulimit -f` or by the file system"  # fmt: skip
    elif isinstance(err, OSError):
        reason = err.strerror or str(err)
    else:  # torch does not say why its writer failed; a full disk is by far the likeliest
        reason = "writing failed, most likely because the disk is full"
    newest = sorted(
        (p for p in path.parent.glob("*.ckpt") if p != path),
        key=lambda p: p.stat().st_mtime_ns, reverse=True,
    )  # fmt: skip
    if path.exists():
        previous = f"The previous {path.name} there is intact."
    elif newest:
        previous = (f"No earlier {path.name} was there; the newest checkpoint there, "
                    f"{newest[0].name}, is intact.")  # fmt: skip
    else:
        previous = f"No earlier {path.name} was there; nothing else was changed."
    fix = "Lift that limit" if "largest size" in reason else "Free space there"
    return CheckpointError(
        f"Cannot save the checkpoint {path} in {path.parent}: {reason}. {previous} {fix} (or "
        "choose another folder for the logs and checkpoints), then resume with --ckpt_path last."
    )
