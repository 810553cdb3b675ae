"""``report``'s page of activation maps: the last ``{stage}/maps`` pictures of a run (one per
target attribute, :mod:`lit_celeba.callbacks.evaluation_pictures`), one under the other in one
PNG, ``maps.png``."""

from __future__ import annotations

import io
import re
from pathlib import Path

from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

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
    width = max(p.width for p in pictures)
    page = Image.new("RGB", (width, sum(p.height + GAP for p in pictures)), (255, 255, 255))
    top = 0
    for picture in pictures:
        page.paste(picture.convert("RGB"), (0, top))
        top += picture.height + GAP
    path = out_dir / MAPS_FILE
    page.save(path)
    return path
