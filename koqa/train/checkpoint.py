"""Resumable checkpoints: one directory per saved step, written atomically, the last few kept.

::

    {root}/step-000050/
        state.json           the run's identity, step, elapsed seconds, best evaluation so far
        metrics.csv          the step logs up to this step, byte for byte (timing.csv too)
        weights.safetensors  the trainable weights: the adapter, or every weight for ``full`` (in
                             5 GB files with an index when larger); under FSDP each process's
                             shards, weights-rank00001.safetensors
        training.pt          optimizer, scheduler and loss-scaler states (under FSDP each
                             process's own, training-rank00001.pt)
        rng-rank00000.pt     each process's CPU and CUDA random number generator states
    {root}/best-000040/      the weights of the lowest validation loss (``eval_every``), written
                             when it improves, kept while the run or a kept checkpoint refers to it

A checkpoint is written under a temporary name and renamed once every process has written its
part and rank 0 has written ``state.json``: a killed job leaves a whole checkpoint or none. Reading
uses safetensors and ``torch.load(weights_only=True)`` only, and reads every file of a checkpoint
before anything is applied, so an unreadable one (truncated, garbage, a file missing) is passed
over with the reason in the log, for the next older one.

Not ``torch.distributed.checkpoint``: its metadata file is read back with plain ``pickle``. A
checkpoint is resumed only by as many processes as wrote it (the world size is part of its
identity), so each process reading back its own shards is all the resharding needed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import save_torch_state_dict
from safetensors import safe_open

from koqa.files import read_json, write_json
from koqa.train.distributed import World, all_agree, barrier

log = logging.getLogger("koqa")
STATE = "state.json"
_STATE_KEYS = ("identity", "step", "elapsed_s", "best", "logs")
MAX_FILE_SIZE = "5GB"
_STEP_DIR = re.compile(r"step-(\d+)")


class UnusableCheckpoint(Exception):
    """A checkpoint that cannot be resumed; the message says why."""


@dataclass
class Restored:
    """A checkpoint read back for this process, not yet applied."""

    path: Path
    state: dict  # state.json
    weight_files: list[Path]  # checked against the trainable weights' names and shapes
    training: dict  # optimizer, scheduler, scaler
    rng: dict


def load_weights(files: list[Path], params: dict[str, torch.Tensor]) -> None:
    """Copy the tensors of safetensors ``files`` into ``params`` of the same names."""
    with torch.no_grad():
        for file in files:
            with safe_open(file, framework="pt", device="cpu") as handle:
                for name in handle.keys():  # noqa: SIM118 (a safetensors handle is no dict)
                    params[name].copy_(handle.get_tensor(name))


def rng_state() -> dict:
    """This process's random number generator states (its GPU's too)."""
    return {
        "cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class Checkpoints:
    """The checkpoints of one training run in directory ``root`` (see the module docstring).

    Every method is called by every process; ``sharded``: each process holds its own part of the
    weights and optimizer states (FSDP), else rank 0 writes them and every process reads them."""

    def __init__(self, root: Path, world: World, sharded: bool, keep: int, device: str) -> None:
        self.root, self.world, self.sharded, self.keep = Path(root), world, sharded, keep
        self.device = device
        self.part = f"-rank{world.rank:05d}" if sharded else ""

    # -- writing ---------------------------------------------------------------------------------
    def save(
        self,
        step: int,
        state: dict,
        weights: dict[str, torch.Tensor],
        training: dict,
        logs: list[Path],
    ) -> None:
        """Write checkpoint ``step-{step}``: ``state`` (JSON), the weights, the training states,
        this process's RNG state and copies of the step ``logs``; then drop all but the newest
        ``keep`` checkpoints."""

        def write(directory: Path) -> None:
            torch.save(rng_state(), directory / f"rng-rank{self.world.rank:05d}.pt")
            if self.sharded or self.world.is_main:
                self._write_weights(weights, directory)
                torch.save(training, directory / f"training{self.part}.pt")

        def finish(directory: Path) -> None:
            for path in logs:
                shutil.copyfile(path, directory / path.name)
            write_json(state, directory / STATE)

        self._write_atomically(f"step-{step:06d}", write, finish)
        if self.world.is_main:
            self._prune(state["best"]["step"])

    def save_best(self, step: int, weights: dict[str, torch.Tensor]) -> None:
        """Write the weights of step ``step``, the best so far, as ``best-{step}``."""

        def write(directory: Path) -> None:
            if self.sharded or self.world.is_main:
                self._write_weights(weights, directory)

        self._write_atomically(f"best-{step:06d}", write, lambda directory: None)
        if self.world.is_main:
            self._prune(step)

    def best_files(self, step: int) -> list[Path]:
        """This process's weight files of ``best-{step}``."""
        return self._weight_files(self.root / f"best-{step:06d}")

    def _write_weights(self, weights: dict[str, torch.Tensor], directory: Path) -> None:
        """Write compact copies: after a forward pass without a backward (an evaluation), an FSDP
        shard on the CPU can be a view into a larger buffer, which safetensors refuses to save."""
        save_torch_state_dict(
            {name: tensor.detach().to("cpu", copy=True) for name, tensor in weights.items()},
            directory,
            filename_pattern=f"weights{self.part}{{suffix}}.safetensors",
            max_shard_size=MAX_FILE_SIZE,
        )

    def _write_atomically(
        self, name: str, write: Callable[[Path], None], finish: Callable[[Path], None]
    ) -> None:
        """Every process runs ``write(staging directory)``, then rank 0 ``finish(it)`` and renames
        it to ``name``."""
        staging = self.root / f".{name}.partial"
        if self.world.is_main:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
        barrier()
        write(staging)
        barrier()
        if self.world.is_main:
            finish(staging)
            shutil.rmtree(self.root / name, ignore_errors=True)
            os.replace(staging, self.root / name)
        barrier()

    def _prune(self, best_step: int) -> None:
        """Keep the newest ``keep`` checkpoints and the best weights that the run (``best_step``)
        or a kept checkpoint refers to; drop leftovers of interrupted writes."""
        checkpoints = self.newest_first()
        for stale in checkpoints[self.keep :]:
            shutil.rmtree(stale)
        wanted = {f"best-{best_step:06d}"}
        for kept in checkpoints[: self.keep]:
            # an unreadable checkpoint refers to nothing
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                wanted.add(f"best-{read_json(kept / STATE)['best']['step']:06d}")
        for path in self.root.glob("best-*"):
            if path.name not in wanted:
                shutil.rmtree(path)
        for path in self.root.glob(".*.partial"):
            shutil.rmtree(path)

    # -- reading ---------------------------------------------------------------------------------
    def newest_first(self) -> list[Path]:
        """The checkpoint directories, newest first."""
        found = [
            (int(match[1]), path)
            for path in self.root.glob("step-*")
            if (match := _STEP_DIR.fullmatch(path.name)) and path.is_dir()
        ]
        return [path for _, path in sorted(found, reverse=True)]

    def restore(self, identity: dict, shapes: dict[str, tuple[int, ...]]) -> Restored | None:
        """The newest checkpoint made with ``identity`` that every process can read (its weights
        of the names and ``shapes`` of this process's trainable weights); None when there is
        none. The log says why each newer one was passed over."""
        for path in self.newest_first():
            try:
                restored, reason = self._read(path, identity, shapes), ""
            except UnusableCheckpoint as err:
                restored, reason = None, str(err)
            if all_agree(restored is not None, self.device):
                return restored
            log.info(
                "ignoring checkpoint %s: %s", path, reason or "another process cannot read its part"
            )
        return None

    def _read(self, path: Path, identity: dict, shapes: dict[str, tuple[int, ...]]) -> Restored:
        try:
            state = read_json(path / STATE)
        except (OSError, ValueError) as err:
            raise UnusableCheckpoint(f"unreadable {STATE} ({err})") from err
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise UnusableCheckpoint(f"{STATE} lacks {', '.join(missing)}")
        changed = [key for key, value in identity.items() if state["identity"].get(key) != value]
        if changed:
            raise UnusableCheckpoint(f"made with other {', '.join(changed)}")
        files = self._checked_weight_files(path, shapes)
        if state["best"]["step"]:  # the best weights it refers to must be there too
            self._checked_weight_files(self.root / f"best-{state['best']['step']:06d}", shapes)
        training = _load(path / f"training{self.part}.pt", self.device)
        rng = _load(path / f"rng-rank{self.world.rank:05d}.pt", "cpu")
        for log_file in state["logs"] if self.world.is_main else []:
            if not (path / log_file).is_file():
                raise UnusableCheckpoint(f"{log_file} is missing")
        return Restored(path, state, files, training, rng)

    def _checked_weight_files(
        self, directory: Path, shapes: dict[str, tuple[int, ...]]
    ) -> list[Path]:
        """This process's weight files in ``directory``, which must hold tensors of exactly the
        names and ``shapes`` given."""
        files = self._weight_files(directory)
        found = {}
        for file in files:
            try:
                with safe_open(file, framework="pt", device="cpu") as handle:
                    for name in handle.keys():  # noqa: SIM118
                        found[name] = tuple(handle.get_slice(name).get_shape())
            except Exception as err:  # any failure to read means: not resumable
                raise UnusableCheckpoint(
                    f"unreadable {directory.name}/{file.name} ({err})"
                ) from err
        if found != shapes:
            raise UnusableCheckpoint(
                f"the tensors of {directory.name}/{files[0].name} are not the model's trainable "
                "weights"
            )
        return files

    def _weight_files(self, directory: Path) -> list[Path]:
        """This process's weight files in ``directory``: those its index names, else the one."""
        index = directory / f"weights{self.part}.safetensors.index.json"
        if index.is_file():
            return sorted({directory / name for name in read_json(index)["weight_map"].values()})
        return [directory / f"weights{self.part}.safetensors"]


def _load(path: Path, device: str) -> dict:
    """A checkpoint's torch file, read onto ``device`` with ``weights_only=True`` (tensors and
    plain data only)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # any failure to read means: not resumable
        raise UnusableCheckpoint(f"unreadable {path.name} ({err})") from err
