"""``data.synthetic`` (a :class:`~lit_celeba.data.demo_set.DemoSet`): the demo set generated
where the data module reads, on first use, with each way it can fail said as that setting's error
(the generator itself raises plain ``ValueError``, ``FileExistsError`` and ``OSError``, for its
own command line as well)."""

from __future__ import annotations

from pathlib import Path

from lit_celeba.base.errors import CelebAError, SettingError
from lit_celeba.data.synthetic.generate import generate_celeba
from lit_celeba.data.synthetic.traits import Correlation


def generate_demo_set(
    root: Path,
    sizes: tuple[int, int, int],
    seed: int,
    correlate: Correlation | None,
) -> None:
    """Generate ``sizes`` (train, valid, test) images at ``root`` unless they are there."""
    try:
        generate_celeba(root, *sizes, seed=seed, correlate=correlate)
    except ValueError as err:  # the generator's own check of synthetic.correlate
        raise SettingError("synthetic.correlate", str(err)) from None
    except FileExistsError as err:
        raise CelebAError(f"data.synthetic is set but {err}") from None
    except OSError as err:  # a full disk, a read-only folder: nothing is left behind
        raise CelebAError(
            f"data.synthetic is set but the generated set cannot be written into "
            f"{root}: {err.strerror or err}. Free space there or choose another "
            "--data.root; nothing was left behind."
        ) from None
