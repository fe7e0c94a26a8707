"""Training side of the native IDA-VLM on tiny checkpoints (CPU): samples built with the inference
prompt, the training forward against the inference forward, overfitting a handful of ID-reference
samples (full tuning and LoRA), the ID-Former started from base, and saving in the published layout."""
from __future__ import annotations

import functools

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from movieid.models.ida_vlm import IdaVlm, Request, RoleImage
from movieid.models.ida_vlm.images import preprocess
from movieid.models.ida_vlm.prompt import SYSTEM_PROMPT, chat_prompt
from movieid.models.ida_vlm.saving import INDEX_FILE, save_published
from movieid.models.ida_vlm.training import (IGNORE_INDEX, LossModule, add_lora, build_example, collate,
                                             enable_gradient_checkpointing, image_roles, is_frozen_in_recipe,
                                             lora_config, loss_terms,
                                             master_weights_in_fp32, merge_lora, set_full_tuning,
                                             with_zero_id_former)
from tests.helpers.tiny_ida_vlm import TINY_CONFIG, published_shapes
from tests.helpers.training_data import SAMPLES, build_small_checkpoint

MMID = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "mmid" / "benchmark_mmid.json"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every computation of this module on one CPU thread. Overfitting at these learning rates is
    chaotic: a float rounded another way early on gives another trajectory (with 1 and 2 threads the
    loss at step 36 was 0.0074 and 0.0047), and under a full run the suite's other worker and
    libraries' thread pools compete for the 2 cores, where a multi-threaded reduction's order is not
    fixed. One thread fixes the order (and is faster for these small matrices)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return build_small_checkpoint(tmp_path_factory.mktemp("small") / "base")


def _load(folder, variant="base"):
    return IdaVlm.from_pretrained(folder, variant=variant, device="cpu")


def _photos(faces_dir, query):
    import re

    return [faces_dir / path for path in re.findall(r"<img>(.*?)</img>", query)]


def _batch(model, faces_dir, samples=SAMPLES):
    examples = [build_example(model.tokenizer, [(query, answer)]) for _, query, answer in samples]
    size = model.config.visual.image_size
    pixels = [preprocess(_photos(faces_dir, query), size, torch.device("cpu")) for _, query, _ in samples]
    return examples, collate(examples, pixels, model.tokenizer.endoftext_id)


def _requests(faces_dir, samples=SAMPLES):
    return [Request(query, tuple(RoleImage(path, role) for path, role in zip(_photos(faces_dir, query),
                                                                             image_roles(query))))
            for _, query, _ in samples]


# ---- samples -------------------------------------------------------------------------------

def test_first_turn_is_the_inference_prompt_with_the_answer_labelled(base_model):
    tok = base_model.tokenizer
    query = "Alice is <img>a.jpg</img>\n Watching the following images <img>b.jpg</img>\n and describe their content."
    example = build_example(tok, [(query, "Alice waves.")])
    prompt = chat_prompt(tok, query)
    answer = tok.encode("Alice waves.") + [tok.im_end_id]
    assert list(example.ids) == prompt.ids + answer
    assert list(example.image_starts) == prompt.image_starts and example.roles == ("id", "test")
    assert list(example.labels) == [IGNORE_INDEX] * len(prompt.ids) + answer
    assert example.prompt_length == len(prompt.ids) and example.n_labels == len(answer)


def test_later_turns_follow_qwen_chatml_history(base_model):
    """Written out from Qwen's make_context: system, then per turn \\n<|im_start|>user\\n...<|im_end|>
    \\n<|im_start|>assistant\\n...<|im_end|>."""
    tok = base_model.tokenizer
    start, end, nl = [tok.im_start_id], [tok.im_end_id], tok.encode("\n")

    def turn(role, text):
        return start + tok.encode(role) + nl + tok.encode(text) + end
    turns = [("What is Bob doing?", "Bob is walking."), ("And now?", "He sits.")]
    expected = (turn("system", SYSTEM_PROMPT) + nl + turn("user", turns[0][0]) + nl + turn("assistant", turns[0][1])
                + nl + turn("user", turns[1][0]) + nl + turn("assistant", turns[1][1]))
    example = build_example(tok, turns)
    assert list(example.ids) == expected
    labelled = [t for t, label in zip(example.ids, example.labels) if label != IGNORE_INDEX]
    assert labelled == tok.encode("Bob is walking.") + end + tok.encode("He sits.") + end


def test_image_roles_of_the_real_benchmark_questions():
    if not MMID.is_file():
        pytest.skip(f"{MMID} not found (the shared fixtures are not checked out here)")
    for item in json.loads(MMID.read_text()):
        roles = image_roles(item["question"])
        assert "test" in roles and roles.index("test") == roles.count("id"), item["id"]  # ID images first
        if item["type"] == "matching":
            assert roles == ["id", "test", "test", "test", "test"]
        if item["type"] == "location":
            assert roles[-1] == "test" and set(roles[:-1]) == {"id"}


def test_bad_conversations_are_refused(base_model):
    from movieid.models.errors import InputError

    with pytest.raises(InputError, match="precede"):
        build_example(base_model.tokenizer, [("<img>a</img> then Bob is <img>b</img>", "x")], roles=["test", "id"])
    with pytest.raises(InputError, match="<img>"):
        build_example(base_model.tokenizer, [("Bob is <img>b</img>", "see <img>c</img>")])


# ---- the training forward ------------------------------------------------------------------

@pytest.mark.parametrize("model_name", ["base_model", "idf_model"])
def test_training_forward_matches_inference_logits(request, model_name, faces_dir):
    """With only each row's first answer token labelled, the padded training batch's loss is the
    inference model's cross-entropy at the end of each prompt, summed."""
    model = request.getfixturevalue(model_name)
    examples, _ = _batch(model, faces_dir)
    first_only = []
    for example in examples:
        labels = [IGNORE_INDEX] * len(example.labels)
        labels[example.prompt_length] = example.labels[example.prompt_length]
        first_only.append(dataclasses.replace(example, labels=tuple(labels)))
    size = model.config.visual.image_size
    pixels = [preprocess(_photos(faces_dir, q), size, torch.device("cpu")) for _, q, _ in SAMPLES]
    with torch.no_grad():
        loss, count = loss_terms(model, collate(first_only, pixels, model.tokenizer.endoftext_id))
    expected = sum(torch.nn.functional.cross_entropy(model.logits(request)[-1:].float(),
                                                     torch.tensor([e.labels[e.prompt_length]]))
                   for request, e in zip(_requests(faces_dir), examples))
    assert count == len(SAMPLES) and len({len(e.ids) for e in examples}) > 1  # rows of several lengths
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-4)


def test_gradient_checkpointing_gives_the_same_gradients(small, faces_dir):
    """No checkpointing, every block, and only the first block: the same gradients."""
    grads = []
    for layers in (0, None, 1):
        model = _load(small)
        set_full_tuning(model)
        enable_gradient_checkpointing(model, layers)
        wrapped = [isinstance(b.forward, functools.partial) for b in model.transformer.h]
        assert sum(wrapped) == (len(wrapped) if layers is None else layers) and wrapped[0] == (layers != 0)
        _, batch = _batch(model, faces_dir, SAMPLES[:2])
        loss, count = loss_terms(model, batch)
        (loss / count).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    for other in grads[1:]:
        assert other.keys() == grads[0].keys()
        for name in grads[0]:
            torch.testing.assert_close(other[name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)


def test_full_tuning_trains_all_but_the_vit():
    names = published_shapes(TINY_CONFIG, with_id_former=True)
    vit = {n for n in names if n.startswith("transformer.visual.") and not n.startswith(
        ("transformer.visual.attn_pool.", "transformer.visual.ln_post.", "transformer.visual.proj"))}
    assert vit and {n for n in names if is_frozen_in_recipe(n)} == vit | {"transformer.visual.attn_pool.pos_embed"}


# ---- overfitting ---------------------------------------------------------------------------

def _overfit(model, faces_dir, samples, steps, lr):
    """Adam with the trainer's betas and gradient clipping, on one batch of ``samples``."""
    master_weights_in_fp32(model)
    enable_gradient_checkpointing(model)
    module = LossModule(model).train()
    trainable = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    _, batch = _batch(model, faces_dir, samples)
    losses = []
    for _ in range(steps):
        loss, count = module(batch)
        (loss / count).backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach() / count))
    module.eval()
    return losses


@pytest.fixture(scope="module")
def overfitted(small, faces_dir):
    """An idf model started from the small base checkpoint, fully tuned on the three samples."""
    model = with_zero_id_former(_load(small))
    set_full_tuning(model)
    torch.manual_seed(0)  # nothing here should draw from the global generator; if it did, from here
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = _overfit(model, faces_dir, SAMPLES, steps=40, lr=5e-3)
    return model, before, losses


def test_zero_started_id_former_computes_what_base_computes(small, faces_dir):
    base = _load(small)
    idf = with_zero_id_former(_load(small))
    assert idf.has_id_former and idf.variant == "idf" and not base.has_id_former
    for request in _requests(faces_dir):
        assert torch.equal(idf.logits(request), base.logits(request))


def test_full_tuning_overfits_and_generation_reproduces_the_answers(overfitted, faces_dir):
    model, before, losses = overfitted
    assert losses[0] > 3 and losses[-1] < 0.05, losses
    answers = model.generate(_requests(faces_dir), max_new_tokens=48)
    assert [a.text for a in answers] == [answer for _, _, answer in SAMPLES]
    now = dict(model.named_parameters())
    assert all(torch.equal(now[n], before[n]) == is_frozen_in_recipe(n) for n in before)  # ViT frozen, rest moved
    assert now["transformer.visual.attn_pool.attn1.out_proj.weight"].abs().sum() > 0  # the ID-Former left zero


def test_lora_overfits_merges_and_saves_its_adapters(small, faces_dir, tmp_path):
    model = _load(small)
    config = lora_config(rank=8, alpha=64, dropout=0.0)
    torch.manual_seed(0)  # peft draws lora_A from torch's global generator
    add_lora(model, config)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n and n.startswith("transformer.h.") for n in trainable)
    assert any("mlp.w1.lora_A" in n for n in trainable) and not any("mlp.c_proj" in n for n in trainable)
    # 5e-3 converges (a final loss of ~0.03 here); at 1e-2 the loss swung between 0.2 and 0.4, and
    # whether the answers came out exact depended on the machine's float rounding
    losses = _overfit(model, faces_dir, SAMPLES[:2], steps=100, lr=5e-3)
    assert losses[0] > 3 and losses[-1] < 0.1, losses
    expected = [a.text for a in model.generate(_requests(faces_dir, SAMPLES[:2]), max_new_tokens=48)]
    assert expected == [answer for _, _, answer in SAMPLES[:2]]

    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    merged = merge_lora({k: v.clone() for k, v in weights.items()}, model, config, tmp_path / "adapter")
    assert {p.name for p in (tmp_path / "adapter").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    key = "transformer.h.1.mlp.w2"  # peft merges W + (alpha / r) B A
    delta = weights[f"{key}.lora_B.default.weight"] @ weights[f"{key}.lora_A.default.weight"] * (64 / 8)
    torch.testing.assert_close(merged[f"{key}.weight"], weights[f"{key}.base_layer.weight"] + delta)
    save_published(merged, small, tmp_path / "merged", torch.float32)
    reloaded = _load(tmp_path / "merged")
    assert [a.text for a in reloaded.generate(_requests(faces_dir, SAMPLES[:2]), max_new_tokens=48)] == expected


# ---- the published layout ------------------------------------------------------------------

def test_saved_checkpoint_has_the_published_keys_and_reloads_bit_identically(overfitted, small, faces_dir, tmp_path):
    model, _, _ = overfitted
    out = tmp_path / "out"
    files = save_published(model.state_dict(), small, out, torch.float32, max_shard_bytes=200_000)
    index = json.loads((out / INDEX_FILE).read_text())
    shapes = {k: list(v) for k, v in published_shapes(json.loads((small / "config.json").read_text()),
                                                      with_id_former=True).items()}
    found = {}
    for shard in sorted(set(index["weight_map"].values())):
        with safe_open(out / shard, framework="pt") as handle:
            found.update({key: handle.get_slice(key).get_shape() for key in handle.keys()})
    assert found == shapes and index["weight_map"].keys() == shapes.keys()
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    for name in ("config.json", "generation_config.json", "qwen.tiktoken"):
        assert (out / name).read_bytes() == (small / name).read_bytes()
    assert (out / INDEX_FILE) in files and not (out / ".saving").exists()

    reloaded = _load(out, variant="idf")
    mine = model.state_dict()
    assert reloaded.state_dict().keys() == mine.keys()
    assert all(torch.equal(tensor, mine[key]) for key, tensor in reloaded.state_dict().items())
    for request in _requests(faces_dir):
        assert torch.equal(reloaded.logits(request), model.logits(request))
