"""Per-job runtime set-up: thread limits, offline Hugging Face, logging into the job's log file."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# RAYON_NUM_THREADS sizes the thread pool of the tokenizers library (encode_batch, BPE training)
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "RAYON_NUM_THREADS",
)


def configure_job(threads: int, allow_download: bool = False) -> None:
    """Limit every math library and the tokenizers library to ``threads``, and keep Hugging Face
    offline unless allowed.

    Call before torch or transformers are imported: both read these variables once at import.
    Two CPU jobs that each use more threads than they were given slow each other down many-fold.
    """
    for name in _THREAD_VARS:
        os.environ[name] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    if not allow_download:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


@contextmanager
def job_log(path: str | Path | None) -> Iterator[logging.Logger]:
    """Send stdout, stderr (progress bars included) and logging of the block to ``path``."""
    if path is None:
        yield logging.getLogger("koqa")
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", buffering=1) as handle:
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = handle
        logging.basicConfig(
            stream=handle,
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(message)s",
            force=True,
        )
        try:
            yield logging.getLogger("koqa")
        except BaseException:
            logging.getLogger("koqa").exception("job failed")
            raise
        finally:
            sys.stdout, sys.stderr = saved


def peak_rss_mb() -> float | None:
    """The most resident memory this process has used so far, in MiB (Linux's VmHWM; None where
    there is no /proc). Not ``getrusage``: its maximum carries a parent's memory across fork+exec."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(kib / 1024, 1)
