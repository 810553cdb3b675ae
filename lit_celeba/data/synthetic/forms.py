"""The generated set in the forms CelebA comes in, so that each can be tried without CelebA:

- ``zip``: the official download, ``img_align_celeba.zip`` (``img_align_celeba/*.jpg`` inside)
  beside ``list_attr_celeba.txt`` and ``list_eval_partition.txt``;
- ``kaggle-zip``: Kaggle's ``archive.zip`` as it comes (``img_align_celeba/img_align_celeba/``
  and the ``.csv`` files inside);
- ``tfds``: a TensorFlow Datasets data dir, ``celeb_a/2.1.0/`` with ``celeb_a-<split>.tfrecord-
  NNNNN-of-NNNNN`` files in tfds order, ``dataset_info.json`` and ``features.json``, written as
  tfds writes them: an Example per image with ``image`` (the JPEG bytes), ``attributes/<name>``
  (0/1) and ``landmarks/<name>`` (zero here: the drawn faces have none).

Each is packed from the same images and labels as :func:`generate_celeba` writes unpacked, so the
forms compare image by image. The unpacked images are written to a temporary folder and deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

from lit_celeba.base.files import building_folder
from lit_celeba.data import tf_example, tfrecord
from lit_celeba.data.annotations import read_attributes, read_partition
from lit_celeba.data.order import tfds_sorted
from lit_celeba.data.synthetic.generate import generate_celeba, load_marker
from lit_celeba.data.synthetic.target import MARKER_NAME, building, move_into_place

FORMS = ("unpacked", "zip", "kaggle-zip", "tfds")
TFDS_VERSION = "2.1.0"
LANDMARKS = (
    "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
    "rightmouth_x rightmouth_y"
).split()
_SPLITS = ("train", "validation", "test")


def write_form(
    root: str | os.PathLike,
    form: str,
    num_train: int,
    num_valid: int,
    num_test: int,
    *,
    seed: int = 0,
    label_noise: float = 0.04,
    progress: bool = True,
    train_shards: int = 2,
) -> Path:
    """Write the generated set at ``root`` in ``form`` (see the module docstring); returns the
    data root to use. Skipped when ``root`` holds this very set; never writes over a folder it
    did not generate (FileExistsError)."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(FORMS)}; got {form!r}")
    if form == "unpacked":
        return generate_celeba(root, num_train, num_valid, num_test, seed=seed,
                               label_noise=label_noise, progress=progress)  # fmt: skip
    root = Path(root).expanduser().absolute()
    marker = {
        "generator": "lit_celeba.data.synthetic",
        "form": form,
        "seed": seed,
        "sizes": [num_train, num_valid, num_test],
        "label_noise": float(label_noise),
        "train_shards": train_shards,
        "note": "Synthetic drawn faces in one of CelebA's download forms, not CelebA.",
    }
    if root.exists() and not (root / MARKER_NAME).is_file():
        if not root.is_dir() or any(root.iterdir()):
            raise FileExistsError(
                f"{root} already exists and holds no {MARKER_NAME}; refusing to write over data "
                "that lit_celeba.data.synthetic did not generate."
            )
    with building(root):
        if not ((root / MARKER_NAME).is_file() and load_marker(root / MARKER_NAME) == marker):
            _write_form(root, form, marker, num_train, num_valid, num_test, seed, label_noise,
                        progress, train_shards)  # fmt: skip
    return root


def _write_form(
    root: Path, form: str, marker: dict, num_train: int, num_valid: int, num_test: int,
    seed: int, label_noise: float, progress: bool, train_shards: int,
) -> None:  # fmt: skip
    build = building_folder(root)
    build.mkdir()
    try:
        layout = "kaggle" if form == "kaggle-zip" else "official"
        unpacked = generate_celeba(build / "unpacked", num_train, num_valid, num_test, seed=seed,
                                   label_noise=label_noise, layout=layout,
                                   progress=progress)  # fmt: skip
        if form == "zip":
            _pack_official(unpacked, build)
        elif form == "kaggle-zip":
            _pack_kaggle(unpacked, build)
        else:
            _pack_tfds(unpacked, build / "celeb_a" / TFDS_VERSION, train_shards)
        shutil.rmtree(build / "unpacked")
        (build / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        move_into_place(build, root)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise


def _images(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jpg"))


def _pack_official(unpacked: Path, out: Path) -> None:
    # Deflated, as the official archive is: reading it costs an inflate per image.
    with zipfile.ZipFile(out / "img_align_celeba.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.mkdir("img_align_celeba")
        for image in _images(unpacked / "img_align_celeba"):
            archive.write(image, f"img_align_celeba/{image.name}")
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt"):
        shutil.copy(unpacked / name, out / name)


def _pack_kaggle(unpacked: Path, out: Path) -> None:
    with zipfile.ZipFile(out / "archive.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for image in _images(unpacked / "img_align_celeba" / "img_align_celeba"):
            archive.write(image, f"img_align_celeba/img_align_celeba/{image.name}")
        for name in ("list_attr_celeba.csv", "list_eval_partition.csv"):
            archive.write(unpacked / name, name)


def tfds_features(jpeg: bytes, attr_names: list[str], values: list[int]) -> dict:
    """One image's features as tfds' celeb_a stores them (keys flattened with ``/``)."""
    features: dict = {"image": jpeg}
    features.update({f"attributes/{a}": [int(v)] for a, v in zip(attr_names, values, strict=True)})
    features.update({f"landmarks/{name}": [0] for name in LANDMARKS})
    return dict(sorted(features.items()))


def _pack_tfds(unpacked: Path, out: Path, train_shards: int) -> None:
    out.mkdir(parents=True)
    names, attr_names, attributes = read_attributes(unpacked / "list_attr_celeba.txt")
    _, partition = read_partition(unpacked / "list_eval_partition.txt")
    image_dir = unpacked / "img_align_celeba"
    splits_info = []
    for part, split in enumerate(_SPLITS):
        rows = [i for i in range(len(names)) if partition[i] == part]
        ordered = [rows[i] for i in tfds_sorted(split, [names[r] for r in rows])]
        shards = max(1, min(train_shards if split == "train" else 1, len(ordered)))
        bounds = [len(ordered) * k // shards for k in range(shards + 1)]
        lengths, size = [], 0
        for shard in range(shards):
            chosen = ordered[bounds[shard] : bounds[shard + 1]]
            payloads = [
                tf_example.encode_example(tfds_features(
                    (image_dir / names[r]).read_bytes(), attr_names, attributes[r].tolist()
                ))
                for r in chosen
            ]  # fmt: skip
            path = out / f"celeb_a-{split}.tfrecord-{shard:05d}-of-{shards:05d}"
            tfrecord.write_records(path, payloads)
            lengths.append(str(len(chosen)))
            size += path.stat().st_size
        template = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
        splits_info.append({"name": split, "numBytes": str(size), "shardLengths": lengths,
                            "filepathTemplate": template})  # fmt: skip
    info = {"name": "celeb_a", "version": TFDS_VERSION, "fileFormat": "tfrecord",
            "moduleName": "lit_celeba.data.synthetic", "splits": splits_info}  # fmt: skip
    (out / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    features = {
        "type": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
        "content": {"image": "Image(shape=(218, 178, 3), dtype=uint8)",
                    "attributes": {a: "bool" for a in attr_names},
                    "landmarks": {n: "int64" for n in LANDMARKS}},
    }  # fmt: skip
    (out / "features.json").write_text(json.dumps(features, indent=2) + "\n", encoding="utf-8")
