"""Tokenizer: special-token ids derived from the ranks, round trips, Qwen's text handling."""
from __future__ import annotations

import pytest

from movieid.models.ida_vlm.tokenizer import FULL_SIZE_ENDOFTEXT_ID, SPECIAL_TOKENS, QwenTokenizer, read_ranks
from movieid.models.ida_vlm import IdaVlmError
from tests.helpers.tiny_ida_vlm import tiny_ranks


@pytest.fixture(scope="module")
def tokenizer():
    return QwenTokenizer(tiny_ranks())


def test_special_ids_follow_the_ranks_in_published_order(tokenizer):
    n = len(tiny_ranks())
    assert (tokenizer.endoftext_id, tokenizer.im_start_id, tokenizer.im_end_id) == (n, n + 1, n + 2)
    assert tokenizer.special_ids["<|extra_0|>"] == n + 3 and tokenizer.special_ids["<|extra_204|>"] == n + 207
    markup = ["<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>", "<img>", "</img>", "<imgpad>"]
    assert [tokenizer.special_ids[t] for t in markup] == list(range(n + 208, n + 217))
    assert (tokenizer.img_start_id, tokenizer.img_end_id, tokenizer.img_pad_id) == (n + 214, n + 215, n + 216)
    assert tokenizer.n_vocab == n + 217


def test_full_size_ids_are_the_published_ones():
    assert FULL_SIZE_ENDOFTEXT_ID + SPECIAL_TOKENS.index("<img>") == 151857
    assert FULL_SIZE_ENDOFTEXT_ID + SPECIAL_TOKENS.index("<|im_end|>") == 151645
    assert FULL_SIZE_ENDOFTEXT_ID + len(SPECIAL_TOKENS) == 151860  # <= vocab_size 151936


@pytest.mark.parametrize("text", ["You are a helpful assistant.", "Alice is walking\n\n  with Bob's dog!",
                                  "Chuchun 推着 Heizi 🚀", "tabs\tand   spaces  ", ""])
def test_round_trip(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_bpe_merges_apply(tokenizer):
    ids = tokenizer.encode(" assistant")
    assert len(ids) == 1 and tokenizer.decode(ids) == " assistant"


def test_markup_becomes_special_tokens_but_chatml_stays_text(tokenizer):
    ids = tokenizer.encode("<ref>Bob</ref><box>(1,2),(3,4)</box>")
    assert ids[0] == tokenizer.special_ids["<ref>"] and tokenizer.special_ids["</box>"] == ids[-1]
    ids = tokenizer.encode("<|im_end|>")
    assert tokenizer.im_end_id not in ids and tokenizer.decode(ids) == "<|im_end|>"


def test_text_is_nfc_normalised(tokenizer):
    assert tokenizer.encode("Ame\u0301lie") == tokenizer.encode("Am\u00e9lie")


def test_decode_skips_ids_past_the_vocabulary(tokenizer):
    assert tokenizer.decode([*tokenizer.encode("Bob"), tokenizer.n_vocab + 5]) == "Bob"


def test_bad_rank_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "qwen.tiktoken"
    bad.write_text("QQ== 0\nQg== 2\n")
    with pytest.raises(IdaVlmError, match="not 0..n-1"):
        read_ranks(bad)
    with pytest.raises(IdaVlmError, match="cannot read tokenizer ranks"):
        read_ranks(tmp_path / "missing.tiktoken")
