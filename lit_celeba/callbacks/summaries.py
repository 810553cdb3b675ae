"""TensorBoard records that no public writer API makes: HParams sessions with any end status
(``torch.utils.tensorboard`` only writes a successful one, TensorBoard's own helper needs
TensorFlow) and PNG images at a fast compression level."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytorch_lightning as pl
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from torch.utils.tensorboard import SummaryWriter

from lit_celeba.base.lightning_internals import file_writer

NOT_HYPERPARAMETERS = {"data/num_workers"}


def run_hyperparameters(
    trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str
) -> dict[str, float | str]:
    """The run's settings as HParams values: the model's (its network's as ``model/net`` and
    ``model/net/KEY``) and the data's saved hyperparameters (a group's as ``data/GROUP/KEY``),
    the optimizer's when fitting, the stage and the seed; lists become strings, ``None`` is left
    out."""
    params: dict[str, Any] = {"stage": stage, **_named("model", pl_module.hparams_initial)}
    if trainer.datamodule is not None:
        params.update(_named("data", trainer.datamodule.hparams_initial))
    if trainer.optimizers:
        optimizer = trainer.optimizers[0]
        params["optimizer"] = type(optimizer).__name__
        group = optimizer.param_groups[0]
        for key in ("lr", "betas", "eps", "weight_decay", "momentum"):
            if key in group:
                params[f"optimizer/{key}"] = group[key]
    if stage == "fit":
        params["trainer/max_epochs"] = trainer.max_epochs
    if "PL_GLOBAL_SEED" in os.environ:
        params["seed"] = int(os.environ["PL_GLOBAL_SEED"])
    plain: dict[str, float | str] = {}
    for key, value in params.items():
        if key.rpartition("/")[2].startswith("_") or value is None or key in NOT_HYPERPARAMETERS:
            continue  # "_": LightningCLI's own entries
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            value = str(list(value) if isinstance(value, tuple) else value)
        plain[key] = value
    return plain


def _named(section: str, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """``{"SECTION/KEY": value}``; an injected module as its class name and ``SECTION/KEY/NAME``
    for each of its init_args (the network), a group of settings (``data.colour``) as
    ``SECTION/KEY/NAME``."""
    params: dict[str, Any] = {}
    for key, value in hparams.items():
        name = f"{section}/{key}"
        if isinstance(value, Mapping) and "class_path" in value:
            params[name] = str(value["class_path"]).rpartition(".")[2]
            value = value.get("init_args", {})
        if isinstance(value, Mapping):
            params.update({f"{name}/{k}": v for k, v in value.items()})
        else:
            params[name] = value
    return params


def session_end_summary(status: str) -> Summary:
    """The HParams plugin's "session ended" record with ``status`` (an ``api_pb2.Status`` name);
    ``torch.utils.tensorboard`` only writes a successful one and TensorBoard's own helper needs
    TensorFlow."""
    content = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(
            status=api_pb2.Status.Value(status), end_time_secs=time.time()
        ),
        version=hparams_metadata.PLUGIN_DATA_VERSION,
    )
    plugin_data = SummaryMetadata.PluginData(
        plugin_name=hparams_metadata.PLUGIN_NAME, content=content.SerializeToString()
    )
    value = Summary.Value(
        tag=hparams_metadata.SESSION_END_INFO_TAG, metadata=SummaryMetadata(plugin_data=plugin_data)
    )
    return Summary(value=[value])



def add_png(writer: SummaryWriter, tag: str, picture: np.ndarray, step: int) -> None:
    """``writer.add_image`` for an HxWx3 uint8 array, with fast PNG compression: the default level
    takes 3 to 4 times as long (about 0.1 s for a gallery) for files only 10 % smaller."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=1)
    height, width, channels = picture.shape
    image = Summary.Image(
        height=height, width=width, colorspace=channels, encoded_image_string=buffer.getvalue()
    )
    summary = Summary(value=[Summary.Value(tag=tag, image=image)])
    file_writer(writer).add_summary(summary, step)


