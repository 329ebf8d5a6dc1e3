"""koqa: Korean reading-comprehension QA, from raw data to a scored submission.

The package holds the logic of every pipeline stage so it can be used from a notebook or tested
without Snakemake. The data and metric modules (ingest, textnorm, align, clean, split, tokenizer,
shards, metric, submission) never import torch.
"""
