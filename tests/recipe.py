"""The default recipe, read from workflow/schemas/config.schema.yaml (the one home of the
defaults), for tests that run the step scripts with every flag the way the pipeline does."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"

#: Each flag of workflow/scripts/train.py (underscores for dashes) -> its (section, key) in the
#: config, as ``train_args`` in workflow/rules/common.smk passes them (section None: top level).
TRAIN_FLAGS = {
    "lr": ("train", "lr"),
    "reg": ("train", "reg"),
    "filters": ("model", "filters"),
    "epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "lr_decay": ("train", "lr_decay"),
    "lr_step": ("train", "lr_step"),
    "clip": ("train", "clip"),
    "bn_momentum": ("model", "bn_momentum"),
    "seed": (None, "seed"),
    "kernel_size": ("model", "kernel_size"),
    "padding1": ("model", "padding1"),
    "padding2": ("model", "padding2"),
    "pool_size": ("model", "pool_size"),
    "pool_stride": ("model", "pool_stride"),
    "device": (None, "device"),
    "train_subset": ("train", "train_subset"),
    "jobs_per_gpu": ("train", "jobs_per_gpu"),
}


def schema_defaults(node: dict | None = None) -> dict:
    """The config the schema's defaults make (what Snakemake's ``validate`` fills in)."""
    if node is None:
        node = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    out = {}
    for key, prop in node.get("properties", {}).items():
        if "properties" in prop:
            out[key] = schema_defaults(prop)
        elif "default" in prop:
            out[key] = prop["default"]
    return out


def train_argv(data, out_dir, **settings) -> list[str]:
    """Arguments of train.py: the schema's recipe with ``settings`` (e.g. ``batch_size=50``) in place."""
    unknown = set(settings) - set(TRAIN_FLAGS)
    if unknown:
        raise ValueError(f"train.py has no flags {sorted(unknown)}")
    config = schema_defaults()
    argv = ["--data", str(data), "--out-dir", str(out_dir)]
    for flag, (section, key) in TRAIN_FLAGS.items():
        value = settings.get(flag, config[key] if section is None else config[section][key])
        argv += [f"--{flag.replace('_', '-')}", str(value)]
    return argv


def train_config(**settings):
    """A :class:`~scratchcnn.training.TrainConfig` of the schema's recipe with ``settings`` in place."""
    from dataclasses import fields

    from scratchcnn.training import TrainConfig

    config = schema_defaults()
    values = {}
    for field in fields(TrainConfig):
        section, key = TRAIN_FLAGS[field.name]
        values[field.name] = config[key] if section is None else config[section][key]
    unknown = set(settings) - set(values)
    if unknown:
        raise ValueError(f"TrainConfig has no fields {sorted(unknown)}")
    return TrainConfig(**{**values, **settings})
