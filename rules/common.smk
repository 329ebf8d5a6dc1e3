# Shared settings and input functions. The tiny model's toy settings are merged in here, the sweeps
# expanded into variants, and the variants and data sources are checked, before any job starts: on their own, and against the
# base model's family (its config.json's model_type, when the model is a local directory or in
# the Hugging Face cache; the embedded tiny model is a llama).

import re

from snakemake.utils import validate

from koqa.config import TINY, effective_config
from koqa.data.sources import part_sources, source_settings, validation_source
from koqa.model.families import check_families, model_type
from koqa.model.modelpath import is_hub_id
from koqa.tracking import check_tracking
from koqa.train.variants import check_all, resolve_variant

# model.name: tiny merges model.tiny.overrides over the defaults; the --configfile values keep
# priority over those overrides
config.update(effective_config(config, workflow.config_settings.overwrite_config))
validate(config, "../schemas/config.schema.yaml")
check_all(config)
check_tracking(config["tracking"])

VARIANTS = list(config["variants"])
TINY_MODEL = config["model"]["name"] == TINY
# Every path Snakemake tracks (params included) is relative to the working directory or as the
# config gives it, never made absolute here: a moved or copied checkout reruns nothing. Jobs
# resolve model paths themselves (koqa.model.modelpath.resolve_model_dir).
MODEL = "results/model/base" if TINY_MODEL else config["model"]["name"]
check_families(config, "llama" if TINY_MODEL else model_type(MODEL))
DOWNLOAD = config["model"]["allow_download"] and is_hub_id(MODEL)
SOURCES = {part: part_sources(config["data"], part) for part in ("train", "test")}
VALIDATION_SOURCE = validation_source(config)
CAPS = source_settings(SOURCES["train"], "cap")


wildcard_constraints:
    variant="|".join(map(re.escape, VARIANTS)),
    part="train|test",
    split="train|validation|test",


def canonical(settings):
    """Settings with keys sorted at every level: reordering keys in a config file must not
    look like a change of params and rerun jobs."""
    if isinstance(settings, dict):
        return {key: canonical(settings[key]) for key in sorted(settings)}
    return settings


def model_input(wildcards=None):
    """The tiny base model is built by a rule; a real one is a given path (no dependency)."""
    return MODEL if TINY_MODEL else []


def download_input(wildcards=None):
    """The download record, when the model comes from the Hub through the download_model rule."""
    return "results/model/download.json" if DOWNLOAD else []


def split_table(wildcards):
    """The cleaned table a split's shards are made from."""
    if wildcards.split == "test":
        return "results/data/clean/test.parquet"
    return f"results/data/split/{wildcards.split}.parquet"


def variant_settings_of(variant):
    """A variant's complete settings (its own over its method's over train's)."""
    return canonical(resolve_variant(config, variant))


def variant_settings(wildcards):
    return variant_settings_of(wildcards.variant)


def one_of(names):
    """A wildcard constraint matching exactly the given names (nothing if there are none)."""
    return "|".join(map(re.escape, names)) or "(?!)"


def validation_shards(wildcards):
    """Validation shards for a variant that measures validation loss while training."""
    return (
        "results/data/shards/validation"
        if variant_settings(wildcards)["eval_every"]
        else []
    )


def uses_gpu(wildcards):
    """GPUs a train or predict job asks for: one unless the variant is pinned to the CPU."""
    return int(variant_settings(wildcards)["device"] != "cpu")


# predict.constrain: always | never decide every generation; auto generates validation both ways
# (rule predict_both), keeps per variant the one with the higher validation F1 (rule
# constrain_choice, results/predictions/{variant}/constrain.json) and test follows that decision.
CONSTRAIN = config["predict"]["constrain"]


def context_rows(wildcards):
    """The cleaned rows that hold the contexts a constrained generation keeps to."""
    return [] if CONSTRAIN == "never" else split_table(wildcards)


def constrain_decision_input(wildcards):
    """The validation decision a test prediction follows under predict.constrain: auto."""
    if CONSTRAIN == "auto" and wildcards.split == "test":
        return f"results/predictions/{wildcards.variant}/constrain.json"
    return []
