"""``--trainer.precision`` on a CPU without native bfloat16 (most laptops; CI's CPU has it):
the configs' ``bf16-mixed`` becomes ``32-true``, said once by ``fit`` and by no other command.

``LIT_CELEBA_NATIVE_BF16=0`` takes that path on any CPU: the whole suite passes with it set
(``LIT_CELEBA_NATIVE_BF16=0 python -m pytest``), which is how a CPU without it was checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jsonargparse import Namespace

from lit_celeba.base.errors import UsageError
from lit_celeba.cli import cli_main
from lit_celeba.speed import precision
from tests.conftest import CONFIGS, run_expecting_error, small_flags, tiny_overrides

NOTE = "has no native bfloat16"


@pytest.fixture
def no_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "native_cpu_bf16", lambda: False)


def test_the_environment_variable_forces_either_answer(monkeypatch) -> None:
    monkeypatch.setenv(precision.NATIVE_BF16_ENV, "0")
    assert precision.supported_precision("bf16-mixed", "cpu") == "32-true"
    monkeypatch.setenv(precision.NATIVE_BF16_ENV, "1")
    assert precision.supported_precision("bf16-mixed", "cpu") == "bf16-mixed"


def test_an_error_is_the_first_line_on_a_cpu_without_bf16(
    no_native_bf16, tiny_checkpoint: Path, tiny_root: Path, tmp_path: Path, capfd, caplog
) -> None:
    """The issue's failing test, in process: `test` with a checkpoint of other attributes
    prints its error first, not the precision it chose."""
    args = ["test", "--config", str(CONFIGS / "base.yaml"),
            *tiny_overrides(tiny_root, tmp_path / "logs"), "--data.target_attr=Young",
            f"--ckpt_path={tiny_checkpoint}"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    assert exit_info.value.code == 2
    captured = capfd.readouterr()
    assert captured.err.startswith("error: "), captured.err
    assert NOTE not in captured.err + captured.out + caplog.text


def test_fit_says_the_precision_it_chose_once(
    no_native_bf16, tmp_path: Path, capfd, caplog
) -> None:
    args = ["fit", "--config", str(CONFIGS / "base.yaml"), "--data.synthetic=null",
            f"--data.root={tmp_path / 'nowhere'}", "--trainer.accelerator=cpu",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}"]  # fmt: skip
    with pytest.raises(SystemExit):
        cli_main(args)  # stops at the missing data set, after the precision is chosen
    captured = capfd.readouterr()
    said = captured.err + captured.out + caplog.text  # Lightning's logger, in process
    assert said.count(NOTE) == 1, said
    assert "using precision 32-true instead" in said


# -- every true precision --------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["64-true", "bf16-true", "16-true"])
def test_every_true_precision_evaluates(
    precision: str, tiny_root: Path, small_run: Path, tmp_path: Path
) -> None:
    ckpt = small_run / "base" / "version_0" / "checkpoints" / "last.ckpt"
    cli = cli_main(["validate", *small_flags(tiny_root, tmp_path / "l"), f"--ckpt_path={ckpt}",
                    f"--trainer.precision={precision}"])  # fmt: skip
    assert 0 <= float(cli.trainer.callback_metrics["val/acc"]) <= 1


def test_training_at_bf16_true_works_and_16_true_says_what_does(
    tiny_root: Path, tmp_path: Path, capsys
) -> None:
    cli = cli_main(["fit", *small_flags(tiny_root, tmp_path / "a"), "--trainer.precision=bf16-true",
                    "--trainer.max_epochs=1"])  # fmt: skip
    assert not any(p.isnan().any() for p in cli.model.parameters())
    message = run_expecting_error(
        ["fit", *small_flags(tiny_root, tmp_path / "b"), "--trainer.precision=16-true"], capsys
    )
    assert "16-true trains float16 weights, and the optimizer's eps 1e-07" in message
    assert "--model.optimizer.eps 1e-4" in message
    assert "16-mixed" in message and "bf16-true" in message
    assert not (tmp_path / "b").exists()  # no empty version_N left behind


def test_an_optimizer_with_several_eps_is_judged_by_its_smallest() -> None:
    """Adafactor's eps is a pair, (None, 1e-3); before, comparing it crashed with a TypeError."""
    adafactor = Namespace(class_path="torch.optim.Adafactor", init_args=Namespace(eps=(None, 1e-3)))
    precision.check_precision("fit", "16-true", adafactor)  # 1e-3: float16 holds it
    tiny = Namespace(class_path="torch.optim.Adafactor", init_args=Namespace(eps=(None, 1e-8)))
    with pytest.raises(UsageError, match="the optimizer's eps 1e-08 is below"):
        precision.check_precision("fit", "16-true", tiny)
