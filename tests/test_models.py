import json
import sys
import types

import pytest
import torch

from clarify import models
from clarify.errors import InputError
from clarify.models import (linear_module_names, load_model, load_tokenizer, locate, prepare_student,
                            quantization_config, resolve_lora_targets)


def test_locate_forms(tmp_path, tiny_model_dir, monkeypatch):
    assert locate(str(tiny_model_dir)) == (str(tiny_model_dir), None)
    assert locate("microsoft/Phi-3.5-mini-instruct") == ("microsoft/Phi-3.5-mini-instruct", None)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert locate(str(gguf)) == (str(tmp_path), "m.gguf")
    fake = types.ModuleType("fake_gguf_pkg")
    fake.assemble = lambda: gguf
    monkeypatch.setitem(sys.modules, "fake_gguf_pkg", fake)
    assert locate("pypi:fake_gguf_pkg") == (str(tmp_path), "m.gguf")


@pytest.mark.parametrize("spec, message", [
    ("/nonexistent/model.gguf", "GGUF file not found"),
    ("./no/such/dir", "neither an existing path nor a hub name"),
    ("pypi:no_such_module_xyz", "cannot import 'no_such_module_xyz'"),
])
def test_locate_errors_are_one_line(spec, message):
    with pytest.raises(InputError, match=message) as info:
        locate(spec)
    assert "\n" not in str(info.value) and "student.model" in str(info.value)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        locate(str(tmp_path))


def test_prepare_student_in_place_for_folders(tiny_model_dir, tmp_path):
    manifest = prepare_student(str(tiny_model_dir), tmp_path / "hf", tmp_path / "manifest.json")
    assert manifest["path"] == str(tiny_model_dir)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert not (tmp_path / "hf").exists()


def test_gguf_conversion_drops_the_quantizer(tiny_model_dir, tmp_path, monkeypatch):
    """A GGUF-loaded model carries a quantizer; the converted folder must reload as plain weights."""
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    real_from_pretrained, real_tokenizer = models._from_pretrained, models.load_tokenizer
    seen = {}

    def fake_from_pretrained(path, gguf_file, **kwargs):
        seen["gguf_file"] = gguf_file
        model = real_from_pretrained(str(tiny_model_dir), gguf_file=None, **kwargs)
        model.hf_quantizer = object()
        model.config.quantization_config = {"quant_method": "gguf"}
        return model

    monkeypatch.setattr(models, "_from_pretrained", fake_from_pretrained)
    monkeypatch.setattr(models, "load_tokenizer", lambda path, gguf_file=None: real_tokenizer(str(tiny_model_dir)))
    manifest = prepare_student(str(gguf), tmp_path / "out" / "hf", tmp_path / "out" / "manifest.json")
    assert seen["gguf_file"] == "tiny.gguf"
    assert manifest["path"] == str(tmp_path / "out" / "hf")
    saved = json.loads((tmp_path / "out" / "hf" / "config.json").read_text())
    assert "quantization_config" not in saved
    monkeypatch.setattr(models, "_from_pretrained", real_from_pretrained)
    reloaded = load_model(manifest, {"dtype": "float32"})
    original = real_from_pretrained(str(tiny_model_dir), gguf_file=None)
    for (name, a), (_, b) in zip(reloaded.state_dict().items(), original.state_dict().items()):
        assert torch.equal(a, b), name
    assert load_tokenizer(manifest["path"]).padding_side == "left"


def test_dtype_is_applied(tiny_model_dir, tmp_path):
    manifest = prepare_student(str(tiny_model_dir), tmp_path / "hf", tmp_path / "m.json")
    assert next(load_model(manifest, {"dtype": "bfloat16"}).parameters()).dtype == torch.bfloat16
    assert next(load_model(manifest, {"dtype": "auto"}).parameters()).dtype == torch.float32  # no CUDA here


def test_four_bit_without_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert quantization_config({"load_in_4bit": False}) is None
    with pytest.raises(InputError, match="quantization.load_in_4bit: .*needs a CUDA GPU"):
        quantization_config({"load_in_4bit": True})


def test_four_bit_config_when_cuda_and_bitsandbytes_exist(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "bitsandbytes", types.ModuleType("bitsandbytes"))
    config = quantization_config({"load_in_4bit": True, "quant_type": "nf4", "compute_dtype": "bfloat16",
                                  "double_quant": True})
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_compute_dtype == torch.bfloat16 and config.bnb_4bit_use_double_quant


def tiny_phi3():
    from transformers import Phi3Config, Phi3ForCausalLM

    return Phi3ForCausalLM(Phi3Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=4, pad_token_id=0))


def test_lora_targets_resolve_all_linear(tiny_model_dir, tmp_path):
    manifest = prepare_student(str(tiny_model_dir), tmp_path / "hf", tmp_path / "m.json")
    model = load_model(manifest, {"dtype": "float32"})
    expected = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert linear_module_names(model) == expected
    assert resolve_lora_targets(model, "all-linear") == expected
    assert resolve_lora_targets(model, ["q_proj", "v_proj"]) == ["q_proj", "v_proj"]
    assert resolve_lora_targets(tiny_phi3(), "all-linear") == ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"]


def test_seed_lora_list_on_phi3_is_an_error_listing_real_names():
    seed_list = ["q_proj", "v_proj", "k_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    with pytest.raises(InputError) as info:
        resolve_lora_targets(tiny_phi3(), seed_list)
    message = str(info.value)
    assert message.startswith("lora.target_modules: q_proj, v_proj, k_proj, gate_proj, up_proj match no")
    assert "it has: down_proj, gate_up_proj, o_proj, qkv_proj" in message


def test_one_gguf_parse_shares_one_reader_per_file_and_restores_gguf(tmp_path):
    """prepare_student's tokenizer, config and weights loads each build a GGUFReader: within
    one_gguf_parse the file is parsed once (three parses were ~120 s of the demo's 135 s)."""
    import gguf

    from clarify.models import one_gguf_parse

    paths = []
    for name in ("a.gguf", "b.gguf"):
        writer = gguf.GGUFWriter(str(tmp_path / name), "llama")
        writer.add_string("general.name", name)
        writer.add_array("tokenizer.ggml.tokens", ["x", "y", "z"])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        paths.append(tmp_path / name)
    real = gguf.GGUFReader
    with one_gguf_parse():
        first = gguf.GGUFReader(paths[0])
        assert gguf.GGUFReader(str(paths[0])) is first                      # same file: same reader
        assert gguf.GGUFReader(tmp_path / "." / "a.gguf") is first
        other = gguf.GGUFReader(paths[1])
        assert other is not first and isinstance(other, real)
        assert bytes(other.fields["general.name"].parts[-1]).decode() == "b.gguf"
        from gguf import GGUFReader                                         # as transformers imports it
        assert GGUFReader(paths[0]) is first
    assert gguf.GGUFReader is real and real(paths[0]) is not first          # outside: a fresh parse


def test_loading_a_model_sets_the_cudnn_attention_switch_both_ways(tiny_model_dir):
    """student.cudnn_attention decides whether SDPA may pick cuDNN; each load sets it, on or off."""
    before = torch.backends.cuda.cudnn_sdp_enabled()
    try:
        load_model({"path": str(tiny_model_dir)}, {"dtype": "float32", "cudnn_attention": True})
        assert torch.backends.cuda.cudnn_sdp_enabled()
        load_model({"path": str(tiny_model_dir)}, {"dtype": "float32"})       # the schema's default: off
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(before)
