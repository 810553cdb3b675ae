"""``python -m lit_celeba.data.synthetic ROOT --num-train N ...``: the generator's command line.

Apart from :mod:`.generate` so that the forms it can write (:mod:`.forms`, which imports the
generator) need no function-level import back into the package.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lit_celeba.data.synthetic.forms import FORMS, write_form
from lit_celeba.data.synthetic.generate import LAYOUTS, generate_celeba


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m lit_celeba.data.synthetic ROOT --num-train N ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m lit_celeba.data.synthetic",
        description="Write a synthetic face data set in CelebA's file formats.",
    )
    parser.add_argument("root", help="data root (the files go to ROOT/celeba for 'official')")
    parser.add_argument("--num-train", type=int, default=4000)
    parser.add_argument("--num-valid", type=int, default=500)
    parser.add_argument("--num-test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label-noise", type=float, default=0.04)
    parser.add_argument("--layout", choices=LAYOUTS, default="official",
                        help="the unpacked layout (--form unpacked)")  # fmt: skip
    parser.add_argument(
        "--form",
        choices=FORMS,
        default="unpacked",
        help="unpacked folders, the official download (img_align_celeba.zip and the .txt "
        "files), Kaggle's archive.zip, or a tfds data dir of TFRecords",
    )
    parser.add_argument(
        "--correlate",
        nargs=3,
        metavar=("TARGET", "SPURIOUS", "SHARE"),
        help="in the train split only, the share of faces whose SPURIOUS label equals their "
        "TARGET label (e.g. Blond_Hair Male 0.05); the other splits leave them independent",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    correlate = None
    if args.correlate is not None:
        try:
            correlate = (args.correlate[0], args.correlate[1], float(args.correlate[2]))
        except ValueError:
            parser.error(f"--correlate's SHARE must be a number, got {args.correlate[2]!r}")
    try:
        if args.form != "unpacked" and correlate is not None:
            parser.error("--correlate works with --form unpacked only")
        if args.form != "unpacked":
            folder = write_form(args.root, args.form, args.num_train, args.num_valid,
                                args.num_test, seed=args.seed, label_noise=args.label_noise,
                                progress=not args.quiet)  # fmt: skip
            print(f"Synthetic CelebA ({args.form} form) in {folder}")
            return 0
        folder = generate_celeba(
            args.root,
            args.num_train,
            args.num_valid,
            args.num_test,
            seed=args.seed,
            label_noise=args.label_noise,
            layout=args.layout,
            progress=not args.quiet,
            correlate=correlate,
        )
    except (ValueError, OSError) as err:  # OSError: FileExistsError, a full disk
        parser.error(str(err))
    print(f"Synthetic CelebA ({args.layout} layout) in {folder}")
    return 0

