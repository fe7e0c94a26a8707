"""Loading through the public loader: layouts, formats, exact key coverage, clear errors."""
from __future__ import annotations

import json
import time

import huggingface_hub
import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import load_file, save_file

from movieid.models.ida_vlm import IdaVlm, IdaVlmError
from tests.helpers.tiny_ida_vlm import TINY_CONFIG, build_tiny_checkpoint, make_request, published_shapes

QUERY = "Give an image description. <img></img>"


@pytest.mark.parametrize("variant", ["base", "idf"])
def test_parameter_names_are_exactly_the_published_keys(checkpoints, variant):
    model = IdaVlm.from_pretrained(checkpoints(variant), variant=variant, device="cpu")
    expected = published_shapes(TINY_CONFIG, with_id_former=variant == "idf")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert not any(p.is_meta for p in model.parameters())
    assert model.variant == variant and model.dtype == torch.float32 and model.device.type == "cpu"


@pytest.mark.parametrize("fmt,shards", [("bin", 3), ("safetensors", 1), ("bin", 1)])
def test_every_weight_format_loads_the_same_weights(tmp_path, base_model, frames, fmt, shards):
    folder = build_tiny_checkpoint(tmp_path / "ckpt", fmt=fmt, shards=shards)
    index = {"bin": "pytorch_model.bin.index.json", "safetensors": "model.safetensors.index.json"}[fmt]
    assert (folder / index).exists() == (shards > 1)
    model = IdaVlm.from_pretrained(folder, device="cpu")
    for key, value in base_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    request = make_request(QUERY, frames[:1], ["general"])
    assert torch.equal(model.logits(request), base_model.logits(request))


def test_repo_root_layout_and_variant_choice(tmp_path):
    build_tiny_checkpoint(tmp_path / "weights" / "model-base")
    build_tiny_checkpoint(tmp_path / "weights" / "model-idf", variant="idf")
    assert IdaVlm.from_pretrained(tmp_path, device="cpu").variant == "base"
    assert IdaVlm.from_pretrained(tmp_path, variant="idf", device="cpu").variant == "idf"
    with pytest.raises(IdaVlmError, match="unknown variant"):
        IdaVlm.from_pretrained(tmp_path, variant="large")


def test_variant_must_match_the_weights(checkpoints):
    with pytest.raises(IdaVlmError, match="idf .*not 'base'"):
        IdaVlm.from_pretrained(checkpoints("idf"))
    with pytest.raises(IdaVlmError, match="base .*not 'idf'"):
        IdaVlm.from_pretrained(checkpoints("base"), variant="idf")


def _edit_first_shard(folder, edit):
    index_file = folder / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    shard = folder / sorted(set(index["weight_map"].values()))[0]
    tensors = load_file(shard)
    edit(tensors)
    save_file(tensors, shard)
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != shard.name}
    index["weight_map"].update(dict.fromkeys(tensors, shard.name))
    index_file.write_text(json.dumps(index))


def test_missing_key_is_an_error_that_names_it(tmp_path):
    folder = build_tiny_checkpoint(tmp_path / "ckpt")
    removed = []
    _edit_first_shard(folder, lambda tensors: removed.append(sorted(tensors)[0]) or tensors.pop(removed[0]))
    with pytest.raises(IdaVlmError, match="missing keys: " + removed[0].replace(".", r"\.")):
        IdaVlm.from_pretrained(folder)


def test_unexpected_key_is_an_error_that_names_it(tmp_path):
    folder = build_tiny_checkpoint(tmp_path / "ckpt")
    _edit_first_shard(folder, lambda t: t.update({"transformer.h.0.attn.masked_bias": torch.tensor(-1e4)}))
    with pytest.raises(IdaVlmError, match=r"unexpected keys: transformer\.h\.0\.attn\.masked_bias"):
        IdaVlm.from_pretrained(folder)


def test_shape_that_disagrees_with_the_config_is_an_error(tmp_path):
    folder = build_tiny_checkpoint(tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 256
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(IdaVlmError, match=r"mlp\.(w1|w2|c_proj)\.weight has shape"):
        IdaVlm.from_pretrained(folder)


def test_folder_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(IdaVlmError, match="not an IDA-VLM checkpoint"):
        IdaVlm.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(TINY_CONFIG))
    with pytest.raises(IdaVlmError, match="no weights found"):
        IdaVlm.from_pretrained(tmp_path)


def test_tokenizer_that_does_not_fit_the_config_is_an_error(tmp_path):
    folder = build_tiny_checkpoint(tmp_path / "ckpt")
    lines = (folder / "qwen.tiktoken").read_text().splitlines()
    (folder / "qwen.tiktoken").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(IdaVlmError, match="does not fit config.json"):
        IdaVlm.from_pretrained(folder)


def test_dtype_can_be_chosen(checkpoints):
    model = IdaVlm.from_pretrained(checkpoints("base"), dtype=torch.bfloat16, device="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_hub_id_offline_fails_fast_with_instructions(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(IdaVlmError) as raised:
        IdaVlm.from_pretrained("jiyatai/IDA-VLM", variant="idf")
    assert time.monotonic() - start < 10
    message = str(raised.value)
    assert "jiyatai/IDA-VLM" in message and "weights/model-idf" in message
    assert "huggingface-cli download jiyatai/IDA-VLM --include 'weights/model-idf/*'" in message


def test_hub_download_failure_is_a_clear_error(monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    with pytest.raises(IdaVlmError, match="cannot download weights/model-base of hub repo jiyatai/IDA-VLM "
                                           r"\(Name or service not known\)"):
        IdaVlm.from_pretrained("jiyatai/IDA-VLM")


def test_hub_download_result_is_used(monkeypatch, tmp_path):
    build_tiny_checkpoint(tmp_path / "weights" / "model-base")
    calls = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo, allow_patterns: calls.append((repo, allow_patterns)) or str(tmp_path))
    assert IdaVlm.from_pretrained("jiyatai/IDA-VLM", device="cpu").variant == "base"
    assert calls == [("jiyatai/IDA-VLM", ["weights/model-base/*"])]
