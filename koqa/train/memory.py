"""Peak GPU memory of a training step and of prediction, estimated before any weight is loaded.

The estimate runs koqa's own code on a model that holds no data: the architecture is built from its
``config.json`` on the meta device, wrapped for the variant's method by
:func:`koqa.train.job.prepare_for_training` (peft, 4-bit NF4 layers with double quantization for
QLoRA), its tensors turned into fake ones (``torch._subclasses.FakeTensorMode``: shapes and dtypes,
no storage), and one training step is run on a batch of ``batch_size`` x ``seq_len`` tokens under
the variant's autocast: forward with the LM head and the loss over the loss window (the loop's
:func:`~koqa.train.loop.windowed` batch; every position unless the workload gives the window),
backward (recomputing with gradient checkpointing), gradient clipping and an AdamW step with the
optimizer states already in place. A dispatch mode adds up the bytes of every tensor storage
alive after each operation; the most at any time is the peak that
``torch.cuda.max_memory_allocated`` reports on a GPU. Weights in
their dtype, 4-bit packing, the trainable parameters and their gradients, AdamW's two states,
activations kept for backward (fewer with checkpointing; SDPA attention), the logits and the loss's
float copies of them all come out of the trace rather than from a formula; so do the architectures
of the model matrix. On the CPU the trace comes within 0.05-0.8% of the measured peak of the real
step in fp32, 1.8% under bf16 autocast (``tests/test_memory.py``).

Tracing every layer of a 32-layer model takes a minute, so a model of more than three layers is
traced with two and with three, and each phase of the step is extended linearly to the real count:
the peak while the first and while the last layer runs forward or backward, before and after the
layers, and in the optimizer step, each of which grows linearly with the number of layers.

Hand-written, because no library does this for a whole training step with peft and bitsandbytes:
``torch.distributed._tools.mem_tracker`` (the same idea, private to torch) fails on prompt tuning's
peft model, and accelerate's ``estimate-memory`` counts weights only. The model is built on the meta
device and only then turned fake: peft cannot move fake parameters between devices, and
bitsandbytes cannot subclass them (``Params4bit``).

What a GPU adds on top of the allocated peak: the CUDA context and library workspaces
(:data:`CUDA_CONTEXT_BYTES`) and the caching allocator's rounding and fragmentation
(:data:`ALLOCATOR_SLACK`); :meth:`Estimate.required` includes both.
"""

from __future__ import annotations

import copy
import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from koqa.data.shards import read_shards
from koqa.train.job import prepare_for_training
from koqa.train.loop import largest_loss_window, pick_device, prepended_labels, windowed
from koqa.train.variants import (
    METHOD_DEFAULTS,
    VIRTUAL_TOKEN_METHODS,
    resolve_variant,
    uses_gradient_checkpointing,
)

log = logging.getLogger("koqa")
GiB = 2**30
# Not counted by torch's allocator but taken from the card: the CUDA context, cuBLAS and cuDNN
# workspaces (about 0.5 GiB with torch 2.x on Ampere and Hopper cards).
CUDA_CONTEXT_BYTES = GiB // 2
# The caching allocator rounds blocks up and cannot always reuse freed ones: what it reserves runs
# some 5-10% above what is allocated during training with batches of varying length.
ALLOCATOR_SLACK = 0.10
# Decoder layers traced for the linear extension to deeper models (see the module docstring).
TRACED_LAYERS = (2, 3)
DTYPE_NAMES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
# max_new_tokens: auto is known only from the training answers; Korean QA answers take far fewer
AUTO_NEW_TOKENS = 32
# precision setting -> autocast dtype (None: fp32) on a GPU that has bf16 (Ampere or newer), and on
# the CPU (as koqa.train.loop.autocast_dtype chooses)
PRECISION_AUTOCAST = {
    "cuda": {"auto": torch.bfloat16, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None},
    "cpu": {"auto": None, "bf16": torch.bfloat16, "fp32": None},
}


class MemoryPlanError(RuntimeError):
    """A training job would not fit its GPU; the message names what would."""


@dataclass(frozen=True)
class Estimate:
    """Memory of one GPU process, in bytes."""

    weights: int  # parameters, buffers, 4-bit quantization states, as loaded
    trainable_params: int  # parameters the optimizer updates
    states: int  # their gradients and AdamW's two states
    peak: int  # most tensor bytes allocated at once (torch.cuda.max_memory_allocated)

    @property
    def required(self) -> int:
        """What the process takes from the card: the peak, the allocator's slack, the context."""
        return round(self.peak * (1 + ALLOCATOR_SLACK)) + CUDA_CONTEXT_BYTES


@dataclass(frozen=True)
class Workload:
    """What the estimate is for: the variant's settings, the tokens of a (micro-)batch, the dtype
    the base model is loaded in, and how many GPUs share the training."""

    settings: dict
    batch_size: int
    seq_len: int
    weights_dtype: str = "float32"  # a DTYPE_NAMES key, or "auto": the checkpoint's own
    world_size: int = 1  # data-parallel processes, one per GPU
    fsdp: bool = False  # full fine-tuning with parameters, gradients and states sharded
    device: str = "cuda"  # cpu: the CPU's defaults (autocast, optimizer), to compare with it
    # the last positions whose logits the loss computes (koqa.train.loop.loss_window); None: every
    # position, the bound for batches of any mix of prompt lengths (what the plan rule assumes)
    loss_window: int | None = None

    @property
    def gradient_checkpointing(self) -> bool:
        return uses_gradient_checkpointing(self.settings, self.device)

    @property
    def autocast(self) -> torch.dtype | None:
        return PRECISION_AUTOCAST[self.device][self.settings["precision"]]


def training_workload(config: dict, variant: str, world_size: int = 1) -> Workload:
    """The training job's workload for ``variant``: its micro-batch at the config's longest example
    (``prompt.max_seq_len``; length-grouped batches reach it), the base model's ``model.dtype``."""
    settings = resolve_variant(config, variant)
    return Workload(
        settings,
        settings["batch_size"],
        config["prompt"]["max_seq_len"],
        # float32 where the config has no model.dtype yet: what load_base_model loads then
        config["model"].get("dtype", "float32"),
        world_size,
        fsdp=world_size > 1 and settings["method"] == "full",
    )


def prediction_workload(config: dict, variant: str) -> Workload:
    """The predict job's workload: ``predict.batch_size`` prompts of the longest length plus the
    answer budget (:data:`AUTO_NEW_TOKENS` assumed for ``max_new_tokens: auto``)."""
    new_tokens = config["predict"]["max_new_tokens"]
    if new_tokens == "auto":
        new_tokens = AUTO_NEW_TOKENS
    return replace(
        training_workload(config, variant),
        batch_size=config["predict"]["batch_size"],
        seq_len=config["prompt"]["max_seq_len"] + new_tokens,
    )


def load_model_config(path: str | Path, trust_remote_code: bool = False) -> PretrainedConfig:
    """The architecture from a model directory or a ``config.json`` (no weights needed)."""
    return AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def resolve_dtype(name: str, config: PretrainedConfig) -> torch.dtype:
    """``model.dtype``: a dtype name, or ``auto`` for the checkpoint's own (fp32 if it names none)."""
    if name != "auto":
        return DTYPE_NAMES[name]
    own = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(own, str):
        return DTYPE_NAMES.get(own, torch.float32)
    return own or torch.float32


# -- the traced model ----------------------------------------------------------------------------
def _num_layers(config: PretrainedConfig) -> int:
    return config.get_text_config().num_hidden_layers


def _with_layers(config: PretrainedConfig, layers: int) -> PretrainedConfig:
    """``config`` with ``layers`` decoder layers; per-layer lists (``layer_types``) cut to match."""
    text = config.get_text_config()
    total = text.num_hidden_layers
    smaller = copy.deepcopy(config)
    target = smaller.get_text_config()
    for key, value in vars(text).items():
        if isinstance(value, list) and len(value) == total:
            setattr(target, key, value[:layers])
    target.num_hidden_layers = layers
    return smaller


def _meta_model(
    config: PretrainedConfig, work: Workload, trust_remote_code: bool, adapted: bool = True
) -> PreTrainedModel:
    """The variant's model on the meta device, as the training job builds it (``adapted``: wrapped
    for its method; else the base alone, 4-bit for QLoRA)."""
    dtype = resolve_dtype(work.weights_dtype, config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(
            config, dtype=dtype, trust_remote_code=trust_remote_code
        )
    if work.settings["method"] == "qlora":
        _replace_with_4bit(model, work.autocast or torch.float32)
    if not adapted or work.settings["method"] == "zeroshot":
        return model
    return prepare_for_training(model, work.settings, work.gradient_checkpointing)


def _replace_with_4bit(model: PreTrainedModel, compute_dtype: torch.dtype) -> None:
    """Swap the linear layers for bitsandbytes' 4-bit ones, as ``load_base_model`` has
    transformers do for QLoRA (same layers kept in full precision, same NF4 settings)."""
    from transformers import BitsAndBytesConfig
    from transformers.integrations.bitsandbytes import replace_with_bnb_linear
    from transformers.quantizers.base import get_keys_to_not_convert

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )
    replace_with_bnb_linear(
        model,
        modules_to_not_convert=get_keys_to_not_convert(model),
        quantization_config=quantization,
    )
    model.is_loaded_in_4bit = True


def _fake_copy(tensor: torch.Tensor, mode: FakeTensorMode) -> torch.Tensor:
    """A fake tensor on the CPU shaped like ``tensor``; a 4-bit weight comes back packed, with its
    quantization state (absmax, nested absmax and code), as bitsandbytes quantizes it."""
    import bitsandbytes as bnb

    with mode:
        if isinstance(tensor, bnb.nn.Params4bit):
            packed, state = bnb.functional.quantize_4bit(
                torch.empty(tensor.shape, dtype=tensor.dtype),
                blocksize=tensor.blocksize,
                compress_statistics=tensor.compress_statistics,
                quant_type=tensor.quant_type,
                quant_storage=tensor.quant_storage,
            )
            fake = torch.nn.Parameter(packed, requires_grad=False)
            fake.quant_state = state
            return fake
        fake = torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype)
    if isinstance(tensor, torch.nn.Parameter):
        return torch.nn.Parameter(fake, requires_grad=tensor.requires_grad)
    return fake


def _fake_mode() -> FakeTensorMode:
    """Fake tensors for the trace; real ones it meets (peft's token indices) are taken in."""
    return FakeTensorMode(allow_non_fake_inputs=True)


def _to_fake(model: torch.nn.Module, mode: FakeTensorMode) -> None:
    """Replace every meta tensor of ``model`` (parameters, buffers, plain tensor attributes) by a
    fake CPU tensor, in place; tied weights stay tied."""
    import bitsandbytes as bnb

    # bitsandbytes builds its quantization code table with Python loops over values; build it
    # once for real so that the fake quantization below finds it cached
    bnb.functional.quantize_4bit(torch.zeros(64), compress_statistics=True)
    copies: dict[int, torch.Tensor] = {}

    def fake(tensor: torch.Tensor) -> torch.Tensor:
        if id(tensor) not in copies:
            copies[id(tensor)] = _fake_copy(tensor, mode)
        return copies[id(tensor)]

    for module in model.modules():
        for store in (module._parameters, module._buffers):
            for name, tensor in store.items():
                if tensor is not None and tensor.is_meta:
                    store[name] = fake(tensor)
        for name, value in list(vars(module).items()):
            if isinstance(value, torch.Tensor) and value.is_meta:
                setattr(module, name, fake(value))
        if isinstance(module, bnb.nn.Linear4bit):
            module.quant_state = module.weight.quant_state
            # no repacking for bitsandbytes' CPU inference kernel: a GPU has none, and
            # load_base_model turns it off on the CPU as well
            module.support_avx512bf16_for_cpu = False


def resident_tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    """The tensors a loaded model keeps: parameters, buffers, and the quantization state of its
    4-bit layers (absmax, code, offset, and the nested absmax and code of double quantization)."""
    import bitsandbytes as bnb

    tensors = [*model.parameters(), *model.buffers()]
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            state = module.weight.quant_state
            for part in (state, state.state2):
                if part is not None:
                    values = (part.absmax, part.code, getattr(part, "offset", None))
                    tensors += [value for value in values if isinstance(value, torch.Tensor)]
    return tensors


# -- tracing -------------------------------------------------------------------------------------
class _StorageTracker(TorchDispatchMode):
    """The bytes of every tensor storage alive, after each operation, and the most of them seen in
    each named phase of the step."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.phase = "setup"
        self.peaks: dict[str, int] = {}
        self._sizes: WeakIdKeyDictionary = WeakIdKeyDictionary()

    def enter(self, phase: str) -> None:
        self.phase = phase
        self._note()

    def _note(self) -> None:
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), self.live)

    def add(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage in self._sizes:
            return
        size = storage.nbytes()
        self._sizes[storage] = size
        self.live += size
        weakref.finalize(storage, self._release, size)
        self._note()

    def _release(self, size: int) -> None:
        self.live -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                self.add(tensor)
        return out


def _decoder_layers(model: torch.nn.Module, count: int) -> torch.nn.ModuleList:
    """The model's list of decoder layers (the longest ModuleList of ``count`` modules)."""
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise ValueError(f"no list of {count} decoder layers found in {type(model).__name__}")


@contextmanager
def _phase_hooks(layers: torch.nn.ModuleList, tracker: _StorageTracker) -> Iterator[None]:
    """Name the phase of the step as it runs: forward (before, in the first or last, or after the
    decoder layers) and backward (the same, in reverse). Backward phases begin when the gradient
    of a layer's output arrives; recomputation under checkpointing stays in its layer's phase."""
    last = len(layers) - 1

    def position(index: int) -> str:
        return {0: "first", last: "last"}.get(index, "middle")

    def on_backward(tensor: object, phase: str) -> None:
        if isinstance(tensor, torch.Tensor) and tensor.requires_grad:
            tensor.register_hook(lambda grad: tracker.enter(phase))

    def before(index: int) -> Callable:
        def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            if not tracker.phase.startswith("forward"):  # recomputation under checkpointing
                return
            tracker.enter(f"forward {position(index)} layer")
            if index == 0:
                hidden = args[0] if args else kwargs.get("hidden_states")
                on_backward(hidden, "backward before layers")

        return hook

    def after(index: int) -> Callable:
        def hook(module: torch.nn.Module, args: tuple, output: object) -> None:
            if not tracker.phase.startswith("forward"):
                return
            tracker.enter("forward after layers" if index == last else "forward middle layer")
            # the gradient of a layer's output arriving starts that layer's backward
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            on_backward(hidden, f"backward {position(index)} layer")

        return hook

    handles = []
    for index, layer in enumerate(layers):
        handles.append(layer.register_forward_pre_hook(before(index), with_kwargs=True))
        handles.append(layer.register_forward_hook(after(index)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _batch(work: Workload) -> dict[str, torch.Tensor]:
    """A right-padded training batch of full length (one row half padding, as real batches are)."""
    shape = (work.batch_size, work.seq_len)
    ids = torch.zeros(shape, dtype=torch.long)
    mask = torch.ones(shape, dtype=torch.long)
    mask[-1, work.seq_len // 2 :] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": ids}


@contextmanager
def _tracing(model: torch.nn.Module, config: PretrainedConfig) -> Iterator[_StorageTracker]:
    """For the block: ``model`` on fake tensors, its phases named, every tensor storage tracked
    (the model's own counted from the start)."""
    mode = _fake_mode()
    _to_fake(model, mode)
    tracker = _StorageTracker()
    with mode, tracker, _phase_hooks(_decoder_layers(model, _num_layers(config)), tracker):
        for tensor in resident_tensors(model):
            tracker.add(tensor)
        yield tracker


def _autocast(work: Workload) -> torch.autocast | nullcontext:
    """The variant's autocast, on the CPU's fake tensors (the CPU's autocast stands for the GPU's)."""
    return torch.autocast("cpu", dtype=work.autocast) if work.autocast else nullcontext()


def _trace_training(config: PretrainedConfig, work: Workload, trust_remote_code: bool) -> dict:
    """Peak bytes per phase of one training step (optimizer states present) and the sizes of
    weights, trainable parameters and their states."""
    model = _meta_model(config, work, trust_remote_code)
    with _tracing(model, config) as tracker:
        weights = tracker.live
        params = [p for p in model.parameters() if p.requires_grad]
        # torch's default AdamW on a GPU is the foreach one: it needs a temporary copy of the
        # second moments; on the CPU it updates one tensor at a time
        optimizer = torch.optim.AdamW(params, lr=1e-4, foreach=work.device == "cuda")
        tracker.enter("optimizer step")  # states from an earlier step
        for param in params:
            param.grad = torch.zeros_like(param)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        optimizer_states = tracker.live - weights
        model.train()
        tracker.enter("forward before layers")
        with _autocast(work):
            window = work.loss_window or work.seq_len
            loss = model(**windowed(_batch(work), window, prepended_labels(model))).loss
        tracker.enter("backward after layers")
        loss.backward()
        del loss
        tracker.enter("optimizer step")
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {
        "peaks": tracker.peaks,
        "weights": weights,
        "gradients": sum(p.numel() * p.element_size() for p in params),
        "optimizer": optimizer_states,
        "trainable": sum(p.numel() for p in params),
    }


def _trace_prediction(config: PretrainedConfig, work: Workload, trust_remote_code: bool) -> dict:
    """Peak bytes per phase of a forward pass filling the KV cache for ``seq_len`` tokens (the
    prompt and the answer budget), with the logits of the last position only, as generation does."""
    # LoRA, DoRA and IA3 are folded into the base weights for prediction and a full fine-tune has
    # the base's shape; prefix and prompt tuning run inside their peft wrapper. The adapter a 4-bit
    # base keeps (tens of MB) is left out.
    settings = {**work.settings, "gradient_checkpointing": False}
    adapted = settings["method"] in VIRTUAL_TOKEN_METHODS
    model = _meta_model(config, replace(work, settings=settings), trust_remote_code, adapted)
    batch = _batch(work)
    del batch["labels"]
    with _tracing(model, config) as tracker, torch.no_grad():
        weights = tracker.live
        model.eval()
        tracker.enter("forward before layers")
        with _autocast(work):
            model(**batch, use_cache=True, logits_to_keep=1)
    return {
        "peaks": tracker.peaks,
        "weights": weights,
        "gradients": 0,
        "optimizer": 0,
        "trainable": 0,
    }


def _extended(
    trace: Callable[[PretrainedConfig, Workload, bool], dict],
    config: PretrainedConfig,
    work: Workload,
    trust_remote_code: bool,
) -> dict:
    """``trace`` of the whole model: directly if it is shallow, else of :data:`TRACED_LAYERS`
    layers, every phase's peak and every size extended linearly to the real number of layers."""
    layers = _num_layers(config)
    if layers <= max(TRACED_LAYERS):
        traced = trace(config, work, trust_remote_code)
        return traced | {"layer_weights": traced["weights"] // layers}
    (a, small), (b, large) = [
        (n, trace(_with_layers(config, n), work, trust_remote_code)) for n in TRACED_LAYERS
    ]

    def extend(x: int, y: int) -> int:
        return x + (y - x) * (layers - a) // (b - a)

    # a middle layer's peak is linear in its index: the first and the last layer's bound it
    peaks = {
        phase: extend(small["peaks"][phase], large["peaks"][phase])
        for phase in large["peaks"]
        if "middle" not in phase
    }
    sizes = ("weights", "gradients", "optimizer", "trainable")
    return {
        "peaks": peaks,
        **{key: extend(small[key], large[key]) for key in sizes},
        "layer_weights": large["weights"] - small["weights"],
    }


def _fsdp_peak(traced: dict, world_size: int) -> int:
    """Per process when FSDP shards weights, gradients and optimizer states over ``world_size``
    processes and gathers one decoder layer's weights (and, in backward, its gradients) at a time;
    activations are not sharded. Phase by phase: the optimizer step holds parameter-sized tensors
    alone; gradients count from the backward of the first layer on (before, few exist)."""
    share = 1 - 1 / world_size
    resident = traced["weights"] + traced["optimizer"]
    peaks = []
    for phase, peak in traced["peaks"].items():
        if phase == "optimizer step":
            peaks.append(peak / world_size)
        else:
            late = phase in ("backward first layer", "backward before layers")
            peaks.append(peak - share * (resident + (traced["gradients"] if late else 0)))
    return round(max(peaks)) + 2 * traced["layer_weights"]


def estimate_training(
    config: PretrainedConfig, work: Workload, trust_remote_code: bool = False
) -> Estimate:
    """Peak memory of one training process for ``work`` (see the module docstring); not for
    zeroshot, which trains nothing."""
    traced = _extended(_trace_training, config, work, trust_remote_code)
    peak = max(traced["peaks"].values())
    if work.fsdp and work.world_size > 1:
        peak = _fsdp_peak(traced, work.world_size)
    elif work.world_size > 1:  # data-parallel: the gradients' all-reduce buffers
        peak += traced["gradients"]
    states = traced["gradients"] + traced["optimizer"]
    return Estimate(traced["weights"], traced["trainable"], states, peak)


def estimate_prediction(
    config: PretrainedConfig, work: Workload, trust_remote_code: bool = False
) -> Estimate:
    """Peak memory of prediction: weights, the KV cache of ``batch_size`` x ``seq_len`` (prompt plus
    answer) tokens and the forward pass's working memory."""
    traced = _extended(_trace_prediction, config, work, trust_remote_code)
    return Estimate(traced["weights"], 0, 0, max(traced["peaks"].values()))


# -- when it does not fit ------------------------------------------------------------------------
def alternatives(work: Workload) -> list[tuple[str, Workload]]:
    """Other ways to train the variant, each as (what to change, the workload it gives): gradient
    checkpointing, smaller micro-batches with more accumulation (the same effective batch),
    QLoRA (with checkpointing, as on a GPU by default), and for full fine-tuning FSDP over more
    GPUs."""
    settings, method = work.settings, work.settings["method"]
    options = []
    checkpointing = {"gradient_checkpointing": True}
    if not work.gradient_checkpointing and method not in VIRTUAL_TOKEN_METHODS:
        options.append(
            ("gradient_checkpointing: true", replace(work, settings=settings | checkpointing))
        )
    batch, accum = work.batch_size, settings["grad_accum"]
    while batch > 1:
        batch, accum = batch // 2, accum * 2
        smaller = {**settings, "batch_size": batch, "grad_accum": accum}
        options.append(
            (
                f"batch_size: {batch}, grad_accum: {accum}",
                replace(work, settings=smaller, batch_size=batch),
            )
        )
    if method in ("full", "lora", "dora"):
        lora = {key: settings.get(key, value) for key, value in METHOD_DEFAULTS["qlora"].items()}
        qlora = settings | lora | checkpointing | {"method": "qlora"}
        change = "method: qlora" + ("" if work.gradient_checkpointing else " with checkpointing")
        options.append((change, replace(work, settings=qlora)))
    if method == "full":
        for gpus in (2, 4, 8):
            if gpus > work.world_size:
                options.append(
                    (f"FSDP over {gpus} GPUs", replace(work, world_size=gpus, fsdp=True))
                )
    return options


def fit_report(
    config: PretrainedConfig,
    work: Workload,
    estimate: Estimate,
    free_bytes: int,
    trust_remote_code: bool = False,
) -> str:
    """Why the variant does not fit in ``free_bytes``, and the estimate of every alternative."""
    lines = [
        f"variants.{work.settings['name']}: training needs about {estimate.required / GiB:.1f} GiB "
        f"per GPU (peak {estimate.peak / GiB:.1f} GiB allocated: weights "
        f"{estimate.weights / GiB:.1f}, gradients and AdamW states {estimate.states / GiB:.1f}; "
        f"batch {work.batch_size} x {work.seq_len} tokens) but only {free_bytes / GiB:.1f} GiB "
        "are free. Estimates of the alternatives:"
    ]
    for change, other in alternatives(work):
        needed = estimate_training(config, other, trust_remote_code).required
        verdict = "fits" if needed <= free_bytes else "does not fit"
        lines.append(f"  {change}: {needed / GiB:.1f} GiB ({verdict})")
    return "\n".join(lines)


def free_gpu_bytes() -> int:
    """The least free memory of any visible GPU (each training process takes one)."""
    return min(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))


def check_job_fits(
    config: dict, variant: str, base_dir: str | Path, shard_dir: str | Path, world_size: int
) -> None:
    """A training job about to load its model: on a GPU, the estimate for its workload (with the
    largest loss window of its training rows' batches) must fit the free memory of every GPU it
    has (:func:`check_training_fits`); on the CPU nothing is checked."""
    settings = resolve_variant(config, variant)
    if pick_device(settings["device"]) != "cuda":
        return
    lengths, _ = read_shards(shard_dir, columns=["n_tokens", "prompt_len"])
    work = training_workload(config, variant, world_size)
    trust_remote_code = config["model"]["trust_remote_code"]
    check_training_fits(
        load_model_config(base_dir, trust_remote_code),
        replace(work, loss_window=largest_loss_window(lengths, settings)),
        free_gpu_bytes(),
        trust_remote_code,
    )


def check_training_fits(
    config: PretrainedConfig,
    work: Workload,
    free_bytes: int,
    trust_remote_code: bool = False,
) -> Estimate:
    """The estimate for ``work``; :class:`MemoryPlanError` if it needs more than ``free_bytes``."""
    estimate = estimate_training(config, work, trust_remote_code)
    log.info(
        "memory plan: %.1f GiB needed per GPU (peak %.1f GiB allocated), %.1f GiB free",
        estimate.required / GiB,
        estimate.peak / GiB,
        free_bytes / GiB,
    )
    if estimate.required > free_bytes:
        raise MemoryPlanError(fit_report(config, work, estimate, free_bytes, trust_remote_code))
    return estimate
