"""The memory plan: every variant's estimated GPU memory for training and prediction, and which
GPU sizes it fits, from the model's ``config.json`` alone (see :mod:`koqa.train.memory`).

    python -m koqa.train.plan [--configfile my.yaml ...] [--model-config path/config.json]
                              [--gpu-gb 24 48 80] [--variants NAME ...] [--loss-window N]
                              [--out results/plan.tsv]

``--configfile`` files are merged over the checkout's ``config.yaml`` as Snakemake merges them.
Without ``--model-config`` the model is the config's ``model.name``: a local directory, or a Hub id
whose ``config.json`` alone is fetched (if ``model.allow_download``) or read from the cache. No GPU
and no weights are needed. The ``plan`` rule writes the same table to ``results/plan.tsv``.

Training computes the logits only over the loss window (:func:`koqa.train.loop.loss_window`: from
the shortest prompt's end to the batch's end), which depends on the rows; the plan assumes every
position (a bound) unless ``--loss-window`` gives one. The train job checks its own rows' largest.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import transformers

from koqa.config import load_config
from koqa.files import write_csv
from koqa.train.memory import (
    GiB,
    estimate_prediction,
    estimate_training,
    load_model_config,
    prediction_workload,
    resolve_dtype,
    training_workload,
)
from koqa.train.variants import check_all

log = logging.getLogger("koqa")
CHECKOUT = Path(__file__).resolve().parents[2]
GPU_GB = (24, 48, 80)
TINY_MODEL_DIR = "results/model/base"  # where the base_model rule builds it


def merged_config(configfiles: list[Path]) -> dict:
    """The effective config of ``snakemake --configfile FILES`` (see :func:`koqa.config.load_config`),
    its variants checked."""
    config = load_config(CHECKOUT / "config.yaml", *configfiles)
    check_all(config)
    return config


def model_config_path(name: str, allow_download: bool = False) -> Path:
    """The ``config.json`` of ``model.name``: the tiny model's once built, in a model's directory,
    or of a Hub id from the local cache (or the Hub, if downloads are allowed; not the weights)."""
    path = Path(TINY_MODEL_DIR if name == "tiny" else name).expanduser()
    if path.is_dir():
        return path / "config.json"
    if name == "tiny":
        raise FileNotFoundError(
            f"the tiny model is not built yet ({TINY_MODEL_DIR}): run `snakemake {TINY_MODEL_DIR}`"
            " or pass --model-config"
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(name, "config.json", local_files_only=not allow_download))
    except (LocalEntryNotFoundError, HFValidationError) as err:
        raise FileNotFoundError(
            f"model.name: no config.json for {name!r} here; pass --model-config path/config.json"
        ) from err


def _gib(value: int) -> float:
    return round(value / GiB, 2)


def plan_table(
    config: dict,
    model_config: str | Path,
    gpu_gb: tuple[int, ...] = GPU_GB,
    trust_remote_code: bool = False,
    variants: list[str] | None = None,
    loss_window: int | None = None,
) -> pd.DataFrame:
    """One row per variant (all, or ``variants``): its settings, trainable parameters, weights, the
    training step's peak and what training and prediction need of a GPU (peak, allocator slack,
    CUDA context), in GiB, and for each size in ``gpu_gb`` (GiB of the card) whether both fit.
    ``loss_window``: the positions training computes logits for (None: all)."""
    architecture = load_model_config(model_config, trust_remote_code)
    rows = []
    for variant in variants or config["variants"]:
        work = replace(training_workload(config, variant), loss_window=loss_window)
        predict = estimate_prediction(
            architecture, prediction_workload(config, variant), trust_remote_code
        )
        row = {
            "variant": variant,
            "method": work.settings["method"],
            "batch_size": work.batch_size,
            "seq_len": work.seq_len,
            "loss_window": loss_window or work.seq_len,
            "gradient_checkpointing": work.gradient_checkpointing,
            "weights_dtype": str(resolve_dtype(work.weights_dtype, architecture)).split(".")[-1],
            "trainable_params": 0,
            "weights_gib": _gib(predict.weights),
            "train_peak_gib": None,
            "train_needs_gib": None,
            "predict_needs_gib": _gib(predict.required),
        }
        needs = predict.required
        if work.settings["method"] != "zeroshot":  # nothing to train
            train = estimate_training(architecture, work, trust_remote_code)
            row.update(
                trainable_params=train.trainable_params,
                weights_gib=_gib(train.weights),
                train_peak_gib=_gib(train.peak),
                train_needs_gib=_gib(train.required),
            )
            needs = max(needs, train.required)
        for size in gpu_gb:
            row[f"fits_{size}gb"] = needs <= size * GiB
        rows.append(row)
        log.info("planned %s", variant)
    return pd.DataFrame(rows)


def readable(table: pd.DataFrame) -> str:
    """The table as aligned text, with what its numbers include."""
    return (
        table.to_string(index=False, na_rep="-")
        + "\n\nGiB. needs = allocated peak + 10% allocator slack + 0.5 GiB CUDA context; a GPU with"
        " bf16 assumed for precision auto. fits: training and prediction both fit a card of that"
        " many GiB.\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m koqa.train.plan", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--configfile", nargs="*", type=Path, default=[], metavar="YAML")
    parser.add_argument("--model-config", type=Path, help="config.json (or its directory)")
    parser.add_argument("--gpu-gb", nargs="+", type=int, default=list(GPU_GB), metavar="GIB")
    parser.add_argument("--variants", nargs="+", metavar="NAME", help="only these (default: all)")
    parser.add_argument(
        "--loss-window", type=int, metavar="N", help="logits per row in training (default: all)"
    )
    parser.add_argument("--out", type=Path, help="write the table here as TSV")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    transformers.logging.set_verbosity_error()
    config = merged_config(args.configfile)
    model = config["model"]
    model_config = args.model_config or model_config_path(model["name"], model["allow_download"])
    trust_remote_code = model["trust_remote_code"]
    table = plan_table(
        config, model_config, tuple(args.gpu_gb), trust_remote_code, args.variants, args.loss_window
    )
    if args.out:
        write_csv(table, args.out, sep="\t")
    sys.stdout.write(readable(table))


if __name__ == "__main__":
    main()
