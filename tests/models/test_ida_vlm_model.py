"""Model behaviour through the public API: roles, ID-Former, cached cast features, limits,
dynamic NTK and log-n scaling."""
from __future__ import annotations

import math

import pytest
import torch

from movieid.models.ida_vlm import EncodedImage, IdaVlm, IdaVlmError, Request, RoleImage, build_id_query
from movieid.models.ida_vlm.config import IdaVlmConfig
from movieid.models.ida_vlm.language import inverse_frequencies, needs_logn, ntk_alpha, positions_for
from movieid.models.ida_vlm.prompt import chat_prompt
from tests.helpers.tiny_ida_vlm import TINY_CONFIG, build_tiny_checkpoint, make_request

CAST = ["Alice", "Bob", "Carol"]
ROLES_3_2 = ["id", "id", "id", "test", "test"]


def _query(n_id=3, n_test=2):
    return build_id_query(CAST[:n_id], n_test, "and describe their content.")


def _images(images, roles):
    return [image if isinstance(image, RoleImage) else RoleImage(image, role) for image, role in zip(images, roles)]


def _logits(model, query, images, roles):
    return model.logits(make_request(query, images, roles))


def _encode(model, images, roles):
    return model.encode_images(_images(images, roles))


def test_encode_images_gives_256_tokens_per_image(base_model, frames):
    tokens = _encode(base_model, frames[:5], ROLES_3_2)
    assert tokens.shape == (5, 256, TINY_CONFIG["hidden_size"]) and tokens.dtype == torch.float32
    assert torch.isfinite(tokens).all()


def test_id_former_with_zero_output_is_an_identity(checkpoints, base_model, frames):
    zero = IdaVlm.from_pretrained(checkpoints("idf_zero"), variant="idf", device="cpu")
    assert torch.equal(_logits(zero, _query(), frames[:5], ROLES_3_2), _logits(base_model, _query(), frames[:5], ROLES_3_2))


def test_id_former_changes_only_the_test_images(base_model, idf_model, frames):
    base, idf = _encode(base_model, frames[:5], ROLES_3_2), _encode(idf_model, frames[:5], ROLES_3_2)
    assert torch.equal(base[:3], idf[:3])
    assert (base[3:] - idf[3:]).abs().amax(dim=(1, 2)).min() > 1e-3
    first_test = chat_prompt(base_model.tokenizer, _query()).image_starts[3]
    base_logits, idf_logits = _logits(base_model, _query(), frames[:5], ROLES_3_2), _logits(idf_model, _query(), frames[:5], ROLES_3_2)
    assert torch.equal(base_logits[:first_test], idf_logits[:first_test])
    assert not torch.allclose(base_logits[first_test:], idf_logits[first_test:])


def test_id_former_uses_the_id_images_of_the_request(idf_model, frames):
    one = _encode(idf_model, [frames[0], frames[3]], ["id", "test"])[1]
    other = _encode(idf_model, [frames[1], frames[3]], ["id", "test"])[1]
    general = _encode(idf_model, [frames[3]], ["general"])[0]
    assert not torch.allclose(one, other) and not torch.allclose(one, general)


@pytest.mark.parametrize("model_name", ["base_model", "idf_model"])
def test_cached_cast_features_are_bit_identical(request, model_name, frames):
    model = request.getfixturevalue(model_name)
    cast = model.precompute(_images(frames[:3], ["id"] * 3))
    assert all(isinstance(c.image, EncodedImage) and c.role == c.image.role == "id" for c in cast)
    assert all((c.image.id_keys is not None) == model.has_id_former for c in cast)
    assert torch.equal(model.precompute(_images(frames[1:2], ["id"]))[0].image.tokens, cast[1].image.tokens)
    cached, raw = [*cast, *frames[3:5]], frames[:5]
    assert torch.equal(_encode(model, cached, ROLES_3_2), _encode(model, raw, ROLES_3_2))
    assert torch.equal(_logits(model, _query(), cached, ROLES_3_2), _logits(model, _query(), raw, ROLES_3_2))
    mixed = [cast[0], frames[1], cast[2], *frames[3:5]]
    assert torch.equal(_logits(model, _query(), mixed, ROLES_3_2), _logits(model, _query(), raw, ROLES_3_2))


def test_cached_general_image(base_model, frames):
    query = "Give an image description. <img></img>"
    (encoded,) = base_model.precompute(_images(frames[:1], ["general"]))
    assert torch.equal(_logits(base_model, query, [encoded], ["general"]), _logits(base_model, query, frames[:1], ["general"]))


def test_encoded_image_misuse_is_refused(base_model, idf_model, frames):
    (cast,) = base_model.precompute([RoleImage(frames[0], "id")])
    with pytest.raises(IdaVlmError, match="test images must be passed raw"):
        RoleImage(cast.image, "test")
    with pytest.raises(IdaVlmError, match="precomputed by a model without the ID-Former"):
        idf_model.encode_images([cast, RoleImage(frames[1], "test")])
    (general,) = base_model.precompute([RoleImage(frames[0], "general")])
    with pytest.raises(IdaVlmError, match="precomputed as 'general' is given as 'id'"):
        RoleImage(general.image, "id")
    with pytest.raises(IdaVlmError, match="'id' or 'general'"):
        base_model.precompute([RoleImage(frames[0], "test")])


def test_prompt_token_count_for_three_cast_and_five_frames(base_model, frames):
    query = build_id_query(CAST, 5, "and describe their content.")
    tok = base_model.tokenizer
    expected = len(chat_prompt(tok, "").ids) + sum(len(tok.encode(p)) for p in query.split("<img></img>")) + 8 * 258
    logits = _logits(base_model, query, frames[:8], ["id"] * 3 + ["test"] * 5)
    assert logits.shape == (expected, TINY_CONFIG["vocab_size"])


def test_window_limits_and_role_rules_are_clear_errors(base_model, frames):
    nine = build_id_query(CAST, 6, "Describe.")
    with pytest.raises(IdaVlmError, match="at most 8 images"):
        make_request(nine, [frames[0]] * 9, ["id"] * 3 + ["test"] * 6)
    with pytest.raises(IdaVlmError, match="at most 8 images"):
        base_model.encode_images(_images([frames[0]] * 9, ["id"] * 3 + ["test"] * 6))
    long_query = "Describe. " * 3000 + "<img></img>"
    with pytest.raises(IdaVlmError, match=r"exceeds the model's context of 4096 tokens"):
        _logits(base_model, long_query, frames[:1], ["general"])
    short = "Describe. " * 900 + "<img></img>"
    with pytest.raises(IdaVlmError, match=r"plus 2000 new tokens exceeds"):
        base_model.generate([make_request(short, frames[:1], ["general"])], max_new_tokens=2000)
    with pytest.raises(IdaVlmError, match="ID images must precede test images"):
        _encode(base_model, frames[:3], ["id", "test", "id"])
    with pytest.raises(IdaVlmError, match="general images cannot share"):
        _encode(base_model, frames[:2], ["id", "general"])
    with pytest.raises(IdaVlmError, match="unknown image role 'cast'"):
        RoleImage(frames[0], "cast")
    with pytest.raises(IdaVlmError, match="unsupported image type bytes"):
        RoleImage(b"bytes", "test")
    with pytest.raises(IdaVlmError, match="1 <img></img> tags but 2 images"):
        make_request("Compare <img></img>", frames[:2], ["general", "general"])
    with pytest.raises(IdaVlmError, match="RoleImage"):
        Request("Who? <img></img>", [frames[0]])
    with pytest.raises(IdaVlmError, match="Request"):
        base_model.generate([("Who? <img></img>", [frames[0]], ["general"])])


def test_ntk_alpha_rule():
    assert [ntk_alpha(n, 2048) for n in (1, 2048, 2049, 4096, 4097, 8192, 8193)] == [1, 1, 3, 3, 7, 7, 15]


def test_logn_scale_only_beyond_seq_length():
    config = IdaVlmConfig.from_dict(TINY_CONFIG)
    inv_freq = inverse_frequencies(config, [1.0], "cpu")
    pos = positions_for(config, torch.arange(config.seq_length + 3)[None], inv_freq, True, torch.float32)
    expected = [1.0] * config.seq_length + [math.log(p) / math.log(config.seq_length) for p in (301, 302, 303)]
    assert torch.allclose(pos.logn.flatten(), torch.tensor(expected))
    assert not needs_logn(config, config.seq_length - 1) and needs_logn(config, config.seq_length)


@pytest.fixture(scope="module")
def scaling_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaling")
    flags = {"off": (False, False), "ntk": (True, False), "logn": (False, True), "both": (True, True)}
    return {name: IdaVlm.from_pretrained(build_tiny_checkpoint(
        root / name, config_overrides={"use_dynamic_ntk": ntk, "use_logn_attn": logn}), device="cpu") for name, (ntk, logn) in flags.items()}


def test_ntk_and_logn_do_nothing_up_to_seq_length(scaling_models, frames):
    query = "Give an image description. <img></img>"
    assert len(chat_prompt(scaling_models["off"].tokenizer, query).ids) <= TINY_CONFIG["seq_length"]
    logits = [_logits(m, query, frames[:1], ["general"]) for m in scaling_models.values()]
    assert all(torch.equal(logits[0], other) for other in logits[1:])


def test_logn_scales_only_queries_beyond_seq_length(scaling_models, frames):
    query, roles = _query(1, 1), ["id", "test"]
    off, logn = _logits(scaling_models["off"], query, frames[:2], roles), _logits(scaling_models["logn"], query, frames[:2], roles)
    limit = TINY_CONFIG["seq_length"]
    assert off.shape[0] > limit + 10
    assert torch.equal(off[:limit], logn[:limit])
    assert ((off[limit:] - logn[limit:]).abs().amax(dim=-1) > 1e-5).all()


def test_dynamic_ntk_changes_rotary_for_long_prompts(scaling_models, frames):
    query, roles = _query(1, 1), ["id", "test"]
    off, ntk = _logits(scaling_models["off"], query, frames[:2], roles), _logits(scaling_models["ntk"], query, frames[:2], roles)
    assert torch.equal(off[0], ntk[0])  # position 0 is not rotated
    assert ((off[1:] - ntk[1:]).abs().amax(dim=-1) > 1e-6).float().mean() > 0.99
