# One training job per variant. Only the variant's own settings are params, so changing one
# variant reruns that variant alone (and what depends on it). A job given more than one GPU
# (resources: gpu > 1, e.g. from a profile) or more than one node (resources: nodes > 1, on SLURM)
# trains data-parallel, one process per GPU; `nodes` stays 1 unless a profile raises it, so a
# cluster job's GPUs are on one node. A failed job is retried once and resumes from its last
# checkpoint (so does one SLURM requeues after preemption).
# Before loading any weight, a job on a GPU checks that its estimated peak memory fits (the memory
# plan, rule plan) and stops otherwise, naming what would fit.

# Trained on a GPU (or the CPU) unless the method trains nothing
TRAINED = [v for v in VARIANTS if variant_settings_of(v)["method"] != "zeroshot"]
ZEROSHOT = [v for v in VARIANTS if v not in TRAINED]


rule train:
    input:
        shards="results/data/shards/train",
        validation=validation_shards,
        model=model_input,
        download=download_input,
    output:
        adapter=directory("results/adapters/{variant}"),
        metrics="results/training/{variant}/metrics.csv",
        timing="results/training/{variant}/timing.csv",
        summary="results/training/{variant}/summary.json",
        plot=report(
            "results/training/{variant}/loss.svg",
            caption="../report/training_loss.rst",
            category="Training",
            subcategory="{variant}",
        ),
    log:
        "results/logs/train/{variant}.log",
    benchmark:
        "results/benchmarks/train/{variant}.tsv"
    wildcard_constraints:
        variant=one_of(TRAINED),
    retries: 1
    conda:
        "../envs/model.yaml"
    threads: config["threads"]
    resources:
        gpu=uses_gpu,
        nodes=1,
    params:
        settings=variant_settings,
        model=MODEL,
        checkpoints=lambda wildcards: f"results/checkpoints/{wildcards.variant}",
        trust_remote_code=config["model"]["trust_remote_code"],
        dtype=config["model"]["dtype"],
    script:
        "../scripts/train.py"


# Zeroshot trains nothing: the job only writes the variant's manifest and an empty log of
# metrics, on the machine Snakemake runs on, with no GPU.
use rule train as train_zeroshot with:
    wildcard_constraints:
        variant=one_of(ZEROSHOT),
    retries: 0
    resources:
        gpu=0,
        nodes=1,


# The memory plan: each variant's estimated GPU memory for training and prediction, from the
# model's config.json alone, and which GPU sizes it fits (koqa/train/plan.py). Not part of `all`:
# `snakemake plan` before a run on real hardware.
rule plan:
    input:
        model=model_input,
    output:
        "results/plan.tsv",
    log:
        "results/logs/plan.log",
    conda:
        "../envs/model.yaml"
    params:
        variants=lambda wildcards: [variant_settings_of(v) for v in VARIANTS],
        model=canonical(config["model"]),
        prompt_max_seq_len=config["prompt"]["max_seq_len"],
        predict=canonical(config["predict"]),
    script:
        "../scripts/plan.py"


localrules:
    train_zeroshot,
    plan,
