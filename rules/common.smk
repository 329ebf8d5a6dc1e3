# Shared settings and input functions. Variant settings are checked here, before any job starts:
# on their own, and against the base model's family (its config.json's model_type, when the model
# is a local directory or in the Hugging Face cache; the embedded tiny model is a llama).

import os

from koqa.model.families import check_families, model_type
from koqa.train.variants import check_all, resolve_variant

check_all(config)

VARIANTS = list(config["variants"])
TINY = config["model"]["name"] == "tiny"
BASE_MODEL = "results/model/base" if TINY else config["model"]["name"]
check_families(config, "llama" if TINY else model_type(BASE_MODEL))


wildcard_constraints:
    variant="|".join(VARIANTS),
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
    return BASE_MODEL if TINY else []


def model_path():
    """Absolute path (or Hub id) of the base model, as jobs must see it."""
    return (
        os.path.abspath(BASE_MODEL) if TINY or os.path.isdir(BASE_MODEL) else BASE_MODEL
    )


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
    return "|".join(names) or "(?!)"


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
