"""The pictures of docs/faces.md and docs/maps.md, as a user gets them.

    python benchmarks/docs_pictures.py --ckpt_path CKPT --out docs [--logdir logs/demo/version_0]

Writes ``predict_maps.png``: a 1200x640 photo with three faces (scikit-image's astronaut, NASA,
public domain: as she is, mirrored and enlarged, smaller and turned by 15 degrees), through
``predict --prediction.maps true`` with the checkpoint. With ``--logdir`` also
``tensorboard_maps.png``: TensorBoard serving that run, its Images tab filtered to the maps,
taken by headless Chromium (Debian's ``chromium``). Prints each file written.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import skimage.data
from PIL import Image

from lit_celeba.cli import cli_main

BACKGROUND = (200, 210, 225)


def three_faces(path: Path) -> Path:
    face = Image.fromarray(skimage.data.astronaut())
    canvas = Image.new("RGB", (1200, 640), BACKGROUND)
    canvas.paste(face.resize((360, 360)), (20, 140))
    canvas.paste(face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (400, 60))
    small = face.resize((260, 260)).rotate(15, Image.Resampling.BILINEAR, expand=True,
                                           fillcolor=BACKGROUND)  # fmt: skip
    canvas.paste(small, (900, 200))
    canvas.save(path, quality=92)
    return path


def predict_picture(ckpt_path: str, out: Path, work: Path) -> Path:
    photo = three_faces(work / "three_faces.jpg")
    results = work / "results"
    cli_main([
        "predict", "--config", str(Path(__file__).resolve().parents[1] / "configs" / "base.yaml"),
        f"--ckpt_path={ckpt_path}", f"--data.predict.path={photo}", "--prediction.maps=true",
        f"--prediction.output={results}/", "--trainer.logger=false",
        f"--trainer.default_root_dir={work}", "--data.num_workers=0",
        "--trainer.enable_progress_bar=false",
    ])  # fmt: skip
    (picture,) = (results / "predictions_maps").glob("*.png")
    return Path(shutil.copy(picture, out / "predict_maps.png"))


def tensorboard_screenshot(logdir: str, out: Path, work: Path) -> Path:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--port", str(port),
         "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        shot = out / "tensorboard_maps.png"
        subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={work / 'chromium'}", "--window-size=1400,1300",
             "--virtual-time-budget=20000", f"--screenshot={shot}",
             f"http://127.0.0.1:{port}/?darkMode=false#images&tagFilter=maps"],
            check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        return shot
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--logdir", help="a run folder whose maps TensorBoard shows")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        print(f"Wrote {predict_picture(args.ckpt_path, args.out, Path(work))}")
        if args.logdir:
            print(f"Wrote {tensorboard_screenshot(args.logdir, args.out, Path(work))}")


if __name__ == "__main__":
    main()
