"""koqa: Korean reading-comprehension QA, from raw data to a scored submission.

The package holds the logic of every pipeline stage so it can be used from a notebook or tested
without Snakemake. It is grouped by stage the way ``rules/`` is:

- ``koqa.data``: ingest, clean, align, split, tokenize into shards, statistics (never imports torch);
- ``koqa.model``: find, build (the tiny model) and load base models; wrap them for each method;
- ``koqa.train``: variant settings, the training loop and job, data-parallel training;
- ``koqa.predict``: batched generation, post-processing of answers, the ensemble;
- ``koqa.score``: the contest's metric, scoring, the submission and its check (never imports torch);
- ``koqa.report``: figures and HTML pages for the report.

``koqa.files`` (atomic output) and ``koqa.runtime`` (per-job set-up) serve every stage.
"""
