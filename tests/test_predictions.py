"""What ``predict`` writes and says (lit_celeba/callbacks/predictions.py and maps.py, the output
path rule of lit_celeba/paths.py): replacing its own CSV and maps, lists of photos as editors
save them, photos without a face, and no run folder when the CSV has a place of its own.

Issue 32, items 5, 6, 7, 10, 11, 14 and 18; docs/bad_input.md, fourth round.
"""

from __future__ import annotations

import csv
import errno
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from lit_celeba.callbacks.predictions import PredictionWriter
from lit_celeba.cli import cli_main
from tests.conftest import (
    CONFIGS,
    REPO,
    base_flags,
    csv_rows,
    run_expecting_error,
    tiny_overrides,
    tree_digest,
)

BASE = str(CONFIGS / "base.yaml")


def _faces(tiny_root: Path, folder: Path, count: int) -> Path:
    """``count`` of the tiny set's aligned faces copied into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for face in sorted((tiny_root / "celeba" / "img_align_celeba").glob("*.jpg"))[:count]:
        shutil.copy(face, folder / face.name)
    return folder


def _predict(ckpt: Path, root: Path, logs: Path, *flags: str):
    return cli_main(["predict", "--config", BASE, *tiny_overrides(root, logs),
                     f"--ckpt_path={ckpt}", *flags])  # fmt: skip


def test_predict_replaces_its_own_photo_predictions_with_faces(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Item 5: the face columns (face, box, landmarks, score) are predict's own too."""
    photos, out = _faces(tiny_root, tmp_path / "photos", 2), tmp_path / "out.csv"
    _predict(tiny_checkpoint, tiny_root, tmp_path / "logs", f"--data.predict.path={photos}",
             f"--prediction.output={out}")  # fmt: skip
    assert "face_score" in out.read_text().splitlines()[0]
    (photos / sorted(os.listdir(photos))[0]).unlink()
    _predict(tiny_checkpoint, tiny_root, tmp_path / "logs", f"--data.predict.path={photos}",
             f"--prediction.output={out}", "--prediction.overwrite=true")  # fmt: skip
    assert len(csv_rows(out)) == 1


def test_overwritten_maps_leave_no_earlier_picture(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Item 6: the maps of the predictions replaced go with them; other files stay."""
    photos, out = _faces(tiny_root, tmp_path / "photos", 3), tmp_path / "results" / "p.csv"
    flags = [f"--data.predict.path={photos}", f"--prediction.output={out}",
             "--prediction.maps=true"]  # fmt: skip
    _predict(tiny_checkpoint, tiny_root, tmp_path / "logs", *flags)
    maps = out.with_name("p_maps")
    assert len(list(maps.glob("*.png"))) == 3
    (maps / "notes.txt").write_text("mine")
    for extra in sorted(photos.iterdir())[1:]:
        extra.unlink()
    _predict(tiny_checkpoint, tiny_root, tmp_path / "logs", *flags,
             "--prediction.overwrite=true")  # fmt: skip
    assert len(list(maps.glob("*.png"))) == 1 and (maps / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8"], ids=["bom", "plain"])
def test_a_list_saved_with_a_byte_order_mark_reads_as_without(
    encoding: str, tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Item 7: Windows editors start a UTF-8 list with a BOM; CRLF line ends too."""
    photos = _faces(tiny_root, tmp_path / "photos", 2)
    listing = tmp_path / "photos.txt"
    listing.write_bytes("".join(f"photos/{p.name}\r\n" for p in sorted(photos.iterdir()))
                        .encode(encoding))  # fmt: skip
    out = tmp_path / "out.csv"
    _predict(tiny_checkpoint, tiny_root, tmp_path / "logs", f"--data.predict.path={listing}",
             f"--prediction.output={out}")  # fmt: skip
    rows = csv_rows(out)
    assert [row["error"] for row in rows] == ["", ""], rows


def test_a_list_that_is_not_utf8_is_one_clear_error(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    listing = tmp_path / "photos.txt"
    listing.write_bytes("Zoë.jpg\n".encode("latin-1"))
    message = run_expecting_error(
        ["predict", "--config", BASE, *tiny_overrides(tiny_root, tmp_path / "logs"),
         f"--ckpt_path={tiny_checkpoint}", f"--data.predict.path={listing}"], capsys,
    )  # fmt: skip
    assert f"--data.predict.path {listing} is not UTF-8 text (byte 2" in message


def test_a_trailing_slash_names_a_folder_for_every_command(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Item 10: the rule of lit_celeba/paths.py, for calibrate --out as for --prediction.output."""
    from lit_celeba.paths import output_file

    assert output_file("new/", "x.csv") == Path("new/x.csv")
    assert output_file(str(tmp_path), "x.csv") == tmp_path / "x.csv"
    assert output_file(tmp_path / "y.csv", "x.csv") == tmp_path / "y.csv"
    out = tmp_path / "calibrated_here"
    cli_main(["calibrate", "--config", BASE, *tiny_overrides(tiny_root, tmp_path / "logs"),
              "--trainer.limit_val_batches=1", f"--ckpt_path={tiny_checkpoint}",
              f"--out={out}/"])  # fmt: skip
    assert (out / "calibrated.ckpt").is_file()


def test_calibrate_over_an_existing_file_is_refused_before_it_runs(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    taken = tmp_path / "taken.ckpt"
    taken.write_text("mine")
    logs = tmp_path / "logs"
    message = run_expecting_error(
        ["calibrate", "--config", BASE, *tiny_overrides(tiny_root, logs),
         f"--ckpt_path={tiny_checkpoint}", f"--out={taken}"], capsys,
    )  # fmt: skip
    assert f"--out {taken} already exists" in message
    assert taken.read_text() == "mine" and not logs.exists()


def test_predict_says_nothing_of_checkpoint_folders_it_does_not_use(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Item 11: "The dirpath has changed from ... won't be reloaded" is fit's business."""
    photos = _faces(tiny_root, tmp_path / "photos", 1)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _predict(tiny_checkpoint, tiny_root, tmp_path / "logs", f"--data.predict.path={photos}")
    assert not [w for w in seen if "dirpath has changed" in str(w.message)]


def test_predict_maps_on_a_celeba_split_is_one_clear_error(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    """Item 14: it wrote nothing and said nothing."""
    logs = tmp_path / "logs"
    message = run_expecting_error(
        ["predict", "--config", BASE, *tiny_overrides(tiny_root, logs),
         f"--ckpt_path={tiny_checkpoint}", "--prediction.maps=true"], capsys,
    )  # fmt: skip
    assert "--prediction.maps true draws maps on your own photos (--data.predict.path)" in (
        message
    )
    assert not logs.exists()


def test_photos_without_any_face_end_with_an_error_and_status_1(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    """Item 14: was "All 1 file(s) were read", exit 0, and nothing predicted."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (400, 300), (120, 160, 200)).save(photos / "sky.jpg")
    out = tmp_path / "out.csv"
    with pytest.raises(SystemExit) as exit_info:
        _predict(tiny_checkpoint, tiny_root, tmp_path / "logs", f"--data.predict.path={photos}",
                 f"--prediction.output={out}")  # fmt: skip
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert "error: no face was found in any of the 1 readable photo(s)" in captured.err
    assert "All 1 file(s) were read; 1 without a face." in captured.out
    assert [row["error"] for row in csv_rows(out)] == ["no face found"]


def test_predict_with_an_output_of_its_own_makes_no_run_folder(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Item 18: the CSV (and its maps) go where --prediction.output says, and nothing goes
    into the logs."""
    photos, logs = _faces(tiny_root, tmp_path / "photos", 1), tmp_path / "logs"
    _predict(tiny_checkpoint, tiny_root, logs, f"--data.predict.path={photos}",
             f"--prediction.output={tmp_path / 'results'}/")  # fmt: skip
    assert (tmp_path / "results" / "predictions.csv").is_file()
    assert not logs.exists()


def test_the_written_line_follows_the_progress_bar(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Item 19: "Wrote N row(s)" starts a line of its own, after the bar (stdout and stderr
    into one terminal, as a user sees them)."""
    photos = _faces(tiny_root, tmp_path / "photos", 1)
    flags = [f for f in tiny_overrides(tiny_root, tmp_path / "logs") if "progress_bar" not in f]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "lit_celeba", "predict", "--config", BASE, *flags,
         f"--ckpt_path={tiny_checkpoint}", f"--data.predict.path={photos}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    assert "Predicting" in done.stdout  # the bar ran
    lines = done.stdout.split("\n")
    assert any(line.startswith("Wrote 1 row(s) (1 predicted") for line in lines), done.stdout


# -- Our own cases: overwriting twice, kills midway, last without a run, no run folder -----------


def test_overwriting_twice_keeps_one_run_of_pictures(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    photos, out = _faces(tiny_root, tmp_path / "photos", 3), tmp_path / "r" / "p.csv"
    listing = tmp_path / "photos.txt"
    flags = [f"--prediction.output={out}", "--prediction.maps=true"]
    _predict(tiny_checkpoint, tiny_root, tmp_path / "logs", f"--data.predict.path={photos}",
             *flags)  # fmt: skip
    for kept in (2, 1):
        names = sorted(p.name for p in photos.iterdir())[:kept]
        listing.write_text("".join(f"photos/{n}\n" for n in names), encoding="utf-8-sig")
        _predict(tiny_checkpoint, tiny_root, tmp_path / "logs", f"--data.predict.path={listing}",
                 *flags, "--prediction.overwrite=true")  # fmt: skip
        assert len(csv_rows(out)) == kept
        assert len(list(out.with_name("p_maps").glob("*.png"))) == kept


def _killed_midway(command: list[str], ready: Path, cwd: Path) -> None:
    """Runs ``python -m lit_celeba COMMAND`` until the pause callback is reached, then kill -9."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "lit_celeba", *command], cwd=cwd, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        for _ in range(3000):
            if ready.exists() or process.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists(), process.stderr.read().decode() if process.poll() is not None else ""
    finally:
        process.kill()
        process.wait()


def test_predict_killed_midway_then_run_again(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """kill -9 between two batches: no CSV (it is written whole at the end), one picture; the
    same command again needs no overwrite and leaves three of each."""
    photos, out = _faces(tiny_root, tmp_path / "photos", 3), tmp_path / "r" / "p.csv"
    flags = ["--config", BASE, *tiny_overrides(tiny_root, tmp_path / "logs"),
             "--data.batch_size=1", f"--ckpt_path={tiny_checkpoint}",
             f"--data.predict.path={photos}", f"--prediction.output={out}",
             "--prediction.maps=true"]  # fmt: skip
    ready = tmp_path / "ready"
    pause = ["--trainer.callbacks+={class_path: tests.interrupt_callbacks.PauseInEvaluation, "
             f"init_args: {{ready_file: '{ready}', batch: 1}}}}"]  # fmt: skip
    _killed_midway(["predict", *flags, *pause], ready, tmp_path)
    assert not out.exists() and len(list(out.with_name("p_maps").glob("*.png"))) == 1
    cli_main(["predict", *flags])
    assert len(csv_rows(out)) == 3 and len(list(out.with_name("p_maps").glob("*.png"))) == 3


def test_calibrate_killed_midway_then_run_again(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "c" / "calibrated.ckpt"
    flags = ["--config", BASE, *tiny_overrides(tiny_root, tmp_path / "logs"),
             "--data.batch_size=8", f"--ckpt_path={tiny_checkpoint}", f"--out={out}"]  # fmt: skip
    ready = tmp_path / "ready"
    pause = ["--trainer.callbacks+={class_path: tests.interrupt_callbacks.PauseInEvaluation, "
             f"init_args: {{ready_file: '{ready}'}}}}"]  # fmt: skip
    _killed_midway(["calibrate", *flags, *pause], ready, tmp_path)
    assert not out.parent.exists() or not any(out.parent.iterdir())
    cli_main(["calibrate", *flags])
    assert [p.name for p in out.parent.iterdir()] == ["calibrated.ckpt"]


def test_predict_last_without_any_run_writes_nothing(
    tiny_root: Path, tmp_path: Path, capsys
) -> None:
    logs, results = tmp_path / "logs", tmp_path / "results"
    message = run_expecting_error(
        ["predict", "--config", BASE, *tiny_overrides(tiny_root, logs), "--ckpt_path=last",
         f"--data.predict.path={tiny_root}", f"--prediction.output={results}/"], capsys,
    )  # fmt: skip
    assert "--ckpt_path last: no last.ckpt under" in message
    assert not logs.exists() and not results.exists()


def test_predict_without_a_logger_and_with_an_output_makes_no_folder(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    photos = _faces(tiny_root, tmp_path / "photos", 1)
    root = tmp_path / "runs_here"
    _predict(tiny_checkpoint, tiny_root, tmp_path / "logs", f"--data.predict.path={photos}",
             f"--prediction.output={tmp_path / 'p.csv'}", "--trainer.logger=false",
             f"--trainer.default_root_dir={root}")  # fmt: skip
    assert (tmp_path / "p.csv").is_file() and not root.exists()


def test_only_unreadable_photos_with_maps_is_status_1_and_no_picture(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "p.csv"
    with pytest.raises(SystemExit) as exit_info:
        _predict(tiny_checkpoint, tiny_root, tmp_path / "logs", f"--data.predict.path={photos}",
                 f"--prediction.output={out}", "--prediction.maps=true")  # fmt: skip
    assert exit_info.value.code == 1
    assert "error: none of the files could be read as an image" in capsys.readouterr().err
    assert not list(tmp_path.glob("p_maps/*.png")) and len(csv_rows(out)) == 1


# -- predict never overwrites a file it did not write ----------------------------------------------


@pytest.mark.parametrize("target", ["the-photo", "the-list", "the-checkpoint", "earlier"])
def test_predict_never_overwrites_a_file_it_did_not_write(
    target: str, tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    photo = tmp_path / "face.jpg"
    shutil.copy(tiny_root / "celeba" / "img_align_celeba" / "000001.jpg", photo)
    listing = tmp_path / "photos.txt"
    listing.write_text(f"{photo}\n")
    ckpt = tmp_path / "model.ckpt"
    shutil.copy(tiny_checkpoint, ckpt)
    earlier = tmp_path / "earlier.csv"
    earlier.write_text("path,prob_Male,pred_Male,error\nx.jpg,0.5,1,\n")
    output = {"the-photo": photo, "the-list": listing, "the-checkpoint": ckpt,
              "earlier": earlier}[target]  # fmt: skip
    before = tree_digest(tmp_path)
    message = run_expecting_error(
        ["predict", *base_flags(tmp_path, tmp_path / "logs"), f"--ckpt_path={ckpt}",
         f"--data.predict.path={listing if target != 'the-list' else photo}",
         f"--prediction.output={output}"], capsys,
    )  # fmt: skip
    if target == "earlier":
        assert f"--prediction.output {output} holds earlier predictions" in message
        assert "--prediction.overwrite true" in message
    else:
        assert f"--prediction.output {output} is an existing file that predict did not write" in (
            message
        )
        assert "never overwrites it" in message
    assert tree_digest(tmp_path) == before and not (tmp_path / "logs").exists()


def test_predict_replaces_earlier_predictions_when_asked(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    earlier = tmp_path / "earlier.csv"
    earlier.write_text("path,prob_Male,pred_Male,error\nx.jpg,0.5,1,\n")
    photo = tiny_root / "celeba" / "img_align_celeba" / "000001.jpg"
    cli_main(["predict", *base_flags(tmp_path, tmp_path / "logs"), f"--ckpt_path={tiny_checkpoint}",
              f"--data.predict.path={photo}", f"--prediction.output={earlier}",
              "--prediction.overwrite=true"])  # fmt: skip
    rows = list(csv.DictReader(earlier.open()))
    assert [row["path"] for row in rows] == [str(photo)]


def test_predictions_output_under_a_file_is_one_clear_error(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    # Before: predicted everything, then a NotADirectoryError traceback.
    blocker = tmp_path / "a_file"
    blocker.write_text("mine")
    photo = tiny_root / "celeba" / "img_align_celeba" / "000001.jpg"
    message = run_expecting_error(
        ["predict", *base_flags(tmp_path, tmp_path / "logs"), f"--ckpt_path={tiny_checkpoint}",
         f"--data.predict.path={photo}", f"--prediction.output={blocker}/out.csv"], capsys,
    )  # fmt: skip
    assert f"Cannot write the predictions to {blocker}/out.csv: {blocker} is a file" in message
    assert blocker.read_text() == "mine"


def test_predictions_stopped_midway_leave_the_earlier_file_whole(tmp_path: Path) -> None:
    # Before: the file was opened for writing at once, so a failure (or a kill) midway left the
    # header and some rows, and the earlier predictions gone.
    path = tmp_path / "predictions.csv"
    path.write_text("image,prob_Male,pred_Male,true_Male\n000001.jpg,0.9,1,1\n")
    before = path.read_bytes()
    trainer = SimpleNamespace(is_global_zero=True, log_dir=str(tmp_path))

    def rows():
        yield ["000002.jpg", "0.1", 0, 0]
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        writer = PredictionWriter(str(path), overwrite=True)
        writer._write_csv(trainer, ["image", "prob_Male", "pred_Male"], rows())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]  # no temporary left


def test_predict_settings_belong_to_the_writer_and_the_old_keys_say_where(
    tiny_root: Path, tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    """Issue 33, steps 5 and 8: --data.predict_output/overwrite/maps moved to --prediction.*;
    the old keys, typed or in a config file, name the new ones, and the dropped predict_split
    says why; another command refuses --prediction.*; nothing is written either way."""
    logs, photos = tmp_path / "logs", _faces(tiny_root, tmp_path / "photos", 1)
    predict = ["predict", "--config", BASE, *tiny_overrides(tiny_root, logs),
               f"--ckpt_path={tiny_checkpoint}", f"--data.predict.path={photos}"]  # fmt: skip
    message = run_expecting_error([*predict, f"--data.predict_output={tmp_path / 'a.csv'}"],
                                  capsys)  # fmt: skip
    assert message.startswith("error: --data.predict_output is now --prediction.output")
    message = run_expecting_error([*predict, "--data.predict_split=valid"], capsys)
    assert message.startswith("error: --data.predict_split is gone: predict without --data.pre")
    old = tmp_path / "old.yaml"
    old.write_text("data:\n  predict_maps: true\n")
    message = run_expecting_error([*predict, "--config", str(old)], capsys)
    assert "--data.predict_maps is now --prediction.maps (in a config file: prediction: " in (
        message
    )
    assert "If the config file is an earlier run's config.yaml, delete predict_output," in message
    message = run_expecting_error([*predict, "--data.train_subgroups=true"], capsys)
    assert message.startswith("error: --data.train_subgroups is gone: the training batches carry")
    message = run_expecting_error(
        ["test", "--config", BASE, *tiny_overrides(tiny_root, logs),
         f"--ckpt_path={tiny_checkpoint}", "--prediction.maps=true"], capsys,
    )  # fmt: skip
    assert message.startswith("error: --prediction.maps: predict's setting(s); test writes")
    assert not logs.exists() and not (tmp_path / "a.csv").exists()
    out = tmp_path / "new" / "p.csv"
    _predict(tiny_checkpoint, tiny_root, logs, f"--data.predict.path={photos}",
             f"--prediction.output={out}", "--prediction.maps=true")  # fmt: skip
    assert len(csv_rows(out)) == 1 and len(list((out.parent / "p_maps").glob("*.png"))) == 1
