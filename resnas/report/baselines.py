"""Hand-designed reference points for a study's report: WRN-16-4 and ResNet-20 fitted with the study's own recipe
and data, saved beside the study and reused once trained."""

from __future__ import annotations

from pathlib import Path

import optuna
import pandas as pd

from .. import checkpoint, guard, records
from ..config import from_table
from ..data import Data, DataConfig, load_data
from ..errors import UserError
from ..fit import fit, save
from ..presets import preset
from ..train import TrainConfig, pick_device

BASELINES = ("wrn-16-4", "resnet-20")
COLUMNS = ("val_acc", "test_acc", "mflops", "params")


def baseline_frame(study: optuna.Study, folder: Path, *, device: str = "auto") -> pd.DataFrame:
    """One row per baseline: name, checkpoint and its metrics."""
    stored = records.study_identity(study)
    if not stored:
        raise UserError(f"study {study.study_name!r} records no training recipe, so baselines cannot match it")
    where = f"study {study.study_name!r}"
    data_config = from_table(DataConfig, stored["data"], where=where, section="data")
    train_config = from_table(TrainConfig, stored["train"], where=where, section="train")
    data: Data | None = None
    rows = []
    for name in BASELINES:
        path = folder / f"{name}.pt"
        if path.is_file():
            metrics = checkpoint.load(path).metrics
        else:
            data = data or load_data(data_config, pick_device(device))
            spec = preset(name).replace(in_channels=data.in_channels, num_classes=data.num_classes)
            guard.check(spec, batch_size=train_config.batch_size, input_size=data.image_size, device=data.device,
                        training=True, eval_batch_size=train_config.eval_batch_size)
            fitted = fit(spec, data, train_config)
            save(fitted, path, train_config=train_config, data_config=data_config)
            metrics = fitted.metrics()
        rows.append({"name": name, "checkpoint": str(path), **{k: metrics[k] for k in COLUMNS}})
    return pd.DataFrame(rows)
