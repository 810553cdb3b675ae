"""The CelebA file formats: both layouts, the real files' quirks, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lit_celeba.base.errors import CelebAError
from lit_celeba.data.annotations import read_attributes
from lit_celeba.data.celeba import find_files, load_index

NAMES = ["5_o_Clock_Shadow", "Eyeglasses", "Male", "Smiling", "Young"]
# (image, partition, values in NAMES order)
ROWS = [
    ("000001.jpg", 0, [-1, -1, -1, 1, 1]),
    ("000002.jpg", 0, [-1, -1, 1, 1, 1]),
    ("000003.jpg", 0, [1, 1, 1, -1, -1]),
    ("000004.jpg", 1, [-1, -1, -1, -1, 1]),
    ("000005.jpg", 1, [-1, 1, 1, 1, 1]),
    ("000006.jpg", 2, [-1, -1, 1, -1, -1]),
]


def write_official(folder: Path, newline: str = "\n", rows=ROWS) -> None:
    """Write the annotation files exactly in the real files' style: a count line, a header with a
    trailing space, values right-aligned in two characters (hence the double spaces)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [str(len(rows)), " ".join(NAMES) + " "]
    lines += [f"{name} " + " ".join(f"{v:2d}" for v in values) for name, _, values in rows]
    (folder / "list_attr_celeba.txt").write_bytes((newline.join(lines) + newline).encode())
    partition = [f"{name} {part}" for name, part, _ in rows]
    (folder / "list_eval_partition.txt").write_bytes((newline.join(partition) + newline).encode())


def write_kaggle(folder: Path, rows=ROWS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image_id," + ",".join(NAMES)]
    lines += [f"{name}," + ",".join(str(v) for v in values) for name, _, values in rows]
    (folder / "list_attr_celeba.csv").write_text("\n".join(lines) + "\n")
    partition = ["image_id,partition"] + [f"{name},{part}" for name, part, _ in rows]
    (folder / "list_eval_partition.csv").write_text("\n".join(partition) + "\n")


def expected_male() -> list[int]:
    return [int(values[NAMES.index("Male")] == 1) for _, _, values in ROWS]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_official_layout_with_the_real_quirks(tmp_path: Path, newline: str) -> None:
    write_official(tmp_path / "celeba", newline)
    attr_text = (tmp_path / "celeba" / "list_attr_celeba.txt").read_bytes()
    assert b"  1" in attr_text
    assert b"Young " + newline.encode() in attr_text

    index = load_index(tmp_path)

    assert index.files.layout == "official"
    assert index.files.image_dir == tmp_path / "celeba" / "img_align_celeba"
    assert index.attr_names == NAMES
    assert index.image_names == [r[0] for r in ROWS]
    assert index.attributes[:, index.attr_column("Male")].tolist() == expected_male()
    assert index.partition.tolist() == [r[1] for r in ROWS]


def test_root_may_be_the_celeba_folder_itself(tmp_path: Path) -> None:
    write_official(tmp_path / "celeba")
    assert load_index(tmp_path / "celeba").image_names == [r[0] for r in ROWS]


def test_kaggle_layout(tmp_path: Path) -> None:
    write_kaggle(tmp_path)
    index = load_index(tmp_path)
    assert index.files.layout == "kaggle"
    assert index.files.image_dir == tmp_path / "img_align_celeba" / "img_align_celeba"
    assert index.attributes[:, index.attr_column("Male")].tolist() == expected_male()
    assert index.partition.tolist() == [r[1] for r in ROWS]


def test_attribute_looked_up_by_name_not_position(tmp_path: Path) -> None:
    write_official(tmp_path / "celeba")
    index = load_index(tmp_path)
    young = index.attributes[:, index.attr_column("Young")]
    assert young.tolist() == [int(v[NAMES.index("Young")] == 1) for _, _, v in ROWS]
    assert index.attributes.dtype == np.int8


def test_split_subsets_in_file_order(tmp_path: Path) -> None:
    write_official(tmp_path / "celeba")
    index = load_index(tmp_path)
    assert index.split_indices("train").tolist() == [0, 1, 2]
    assert index.split_indices("train", 2).tolist() == [0, 1]
    assert index.split_indices("valid").tolist() == [3, 4]
    assert index.split_indices("test").tolist() == [5]


def test_subset_larger_than_split(tmp_path: Path) -> None:
    write_official(tmp_path / "celeba")
    with pytest.raises(CelebAError, match=r"Requested 4 images of the 'train' split.*lists 3"):
        load_index(tmp_path).split_indices("train", 4)


def test_unknown_attribute_lists_valid_names(tmp_path: Path) -> None:
    write_official(tmp_path / "celeba")
    with pytest.raises(CelebAError, match=r"Unknown attribute 'male'.*Valid names: .*Male"):
        load_index(tmp_path).attr_column("male")


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(CelebAError, match=r"does not exist[\s\S]*img_align_celeba[\s\S]*demo"):
        find_files(tmp_path / "nowhere")


def test_wrong_layout_shows_expected_tree(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(CelebAError, match=r"No CelebA annotation files[\s\S]*list_attr_celeba"):
        find_files(tmp_path)


def test_partial_copy_names_the_missing_file(tmp_path: Path) -> None:
    write_official(tmp_path / "celeba")
    (tmp_path / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(CelebAError, match=r"not .*list_eval_partition\.txt"):
        find_files(tmp_path)


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("000003.jpg  1  1  1 -1", r"line 5: expected a file name and 5 values, found 4"),
        ("000003.jpg  1  1  1 -1  0", r"line 5: attribute value '0' is not 1 or -1"),
    ],
)
def test_malformed_attribute_line_names_file_and_line(tmp_path: Path, bad_line, message) -> None:
    write_official(tmp_path / "celeba")
    path = tmp_path / "celeba" / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    lines[4] = bad_line  # the third image's row is line 5 of the file
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CelebAError, match=message) as info:
        read_attributes(path)
    assert str(path) in str(info.value)


def test_truncated_attribute_file(tmp_path: Path) -> None:
    write_official(tmp_path / "celeba")
    path = tmp_path / "celeba" / "list_attr_celeba.txt"
    path.write_text("\n".join(path.read_text().splitlines()[:-2]) + "\n")
    with pytest.raises(CelebAError, match=r"count says 6 images but the file lists 4"):
        read_attributes(path)


def test_malformed_partition_line(tmp_path: Path) -> None:
    write_official(tmp_path / "celeba")
    path = tmp_path / "celeba" / "list_eval_partition.txt"
    path.write_text(path.read_text().replace("000002.jpg 0", "000002.jpg 7"))
    with pytest.raises(CelebAError, match=r"list_eval_partition\.txt, line 2"):
        load_index(tmp_path)


def test_partition_and_attributes_disagree(tmp_path: Path) -> None:
    write_official(tmp_path / "celeba")
    path = tmp_path / "celeba" / "list_eval_partition.txt"
    path.write_text(path.read_text().replace("000004.jpg", "000099.jpg"))
    with pytest.raises(CelebAError, match=r"disagree.*first differing at entry 4"):
        load_index(tmp_path)
