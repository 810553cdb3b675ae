"""``report``'s page of activation maps: the last ``{stage}/maps`` pictures of a run (one per
target attribute, :mod:`lit_celeba.callbacks.evaluation_pictures`), in a grid about as wide as
it is tall, in one PNG, ``maps.png``."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

from lit_celeba.base.files import atomic_write

MAPS_FILE = "maps.png"
MAPS_TAG = re.compile(r"^(val|test)/maps(/.+)?$")
GAP = 12


def write_maps_page(events: event_accumulator.EventAccumulator, out_dir: Path) -> Path | None:
    """Writes ``maps.png`` into ``out_dir`` when the run logged activation maps; its path."""
    tags = [tag for tag in events.Tags()["images"] if MAPS_TAG.match(tag)]
    if not tags:
        return None
    pictures = [Image.open(io.BytesIO(events.Images(tag)[-1].encoded_image_string))
                for tag in tags]  # fmt: skip
    # A grid about as wide as it is tall: 40 attributes' pictures one under the other made a
    # page 136 pixels wide and 16,800 tall.
    width, height = max(p.width for p in pictures) + GAP, max(p.height for p in pictures) + GAP
    columns = max(1, min(len(pictures), round(math.sqrt(len(pictures) * height / width))))
    rows = math.ceil(len(pictures) / columns)
    page = Image.new("RGB", (columns * width, rows * height), (255, 255, 255))
    for index, picture in enumerate(pictures):
        row, column = divmod(index, columns)
        page.paste(picture.convert("RGB"), (column * width, row * height))
    path = out_dir / MAPS_FILE
    with atomic_write(path, "wb") as fh:
        page.save(fh, format="PNG")
    return path
