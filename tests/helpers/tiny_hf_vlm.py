"""Tiny random image-text-to-text models of two families, saved as a user's download would be.

Each folder holds what ``save_pretrained`` writes for the published model's classes: config,
generation config, safetensors weights, the processor (image processor, video processor,
tokenizer) and the published chat template. The tokenizer is a small byte-level BPE trained
with the ``tokenizers`` library on a few sentences, followed by the family's special tokens
(what the processor and the template need), so ids differ from the real models but every
piece is the real class.
"""
from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    "Alice is standing by the window while Bob reads a letter.",
    "Watching the following images, describe in one or two sentences who is doing what.",
    "Barack Obama and Joe Biden shake hands; Rose Leslie smiles at Kit Harington.",
    "Faces are outlined: red, blue, green, yellow, magenta, cyan, orange, white.",
]

# Qwen2-VL / Qwen2.5-VL chat template as published with the models (Qwen/Qwen2.5-VL-*-Instruct).
QWEN_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

# SmolVLM / SmolVLM2 chat template as published (HuggingFaceTB/SmolVLM2-*-Instruct, images only).
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SMOLVLM_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<fake_token_around_image>", "<image>",
                    "<end_of_utterance>", "<global-img>",
                    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))]


def _bpe(specials: list[str], vocab_size: int = 400) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE trained on CORPUS, then the special tokens at the end of the vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    vocab = dict(tokenizer.get_vocab())
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in json.loads(tokenizer.to_str())["model"]["merges"]]
    for token in specials:
        vocab[token] = len(vocab)
    return vocab, merges


def build_qwen2_5_vl(folder: Path, seed: int = 0) -> Path:
    """A Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``) with a 2-layer vision tower and LM."""
    import torch
    from transformers import (GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2_5_VLProcessor, Qwen2Tokenizer, Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    vocab, merges = _bpe(QWEN_SPECIALS)
    ids = {t: vocab[t] for t in QWEN_SPECIALS}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                               extra_special_tokens=QWEN_SPECIALS[1:])
    # The published preprocessor's pixel range (min 56*56, max 12845056): the engine sets its own bound.
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056),
                                    tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
                                    chat_template=QWEN_TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, initializer_range=0.2,
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                         pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1], initializer_range=0.2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    # As published: sampling defaults, which the engine overrides with greedy decoding.
    model.generation_config = GenerationConfig(bos_token_id=ids["<|endoftext|>"], pad_token_id=ids["<|endoftext|>"],
                                               eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
                                               do_sample=True, temperature=0.1, top_p=0.001, top_k=1)
    processor.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def build_smolvlm2(folder: Path, seed: int = 0) -> Path:
    """A SmolVLM2 (``SmolVLMForConditionalGeneration``: SigLIP tower, pixel shuffle, Llama LM) whose
    image processor splits images into 32-px tiles plus a global image, 4 tokens each."""
    import torch
    from transformers import (GenerationConfig, GPT2Tokenizer, SmolVLMConfig, SmolVLMForConditionalGeneration,
                              SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor)

    vocab, merges = _bpe(SMOLVLM_SPECIALS)
    ids = {t: vocab[t] for t in SMOLVLM_SPECIALS}
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges, bos_token="<|im_start|>", eos_token="<|im_end|>",
                              pad_token="<|im_end|>", unk_token="<|endoftext|>", extra_special_tokens=SMOLVLM_SPECIALS)
    image_processor = SmolVLMImageProcessor(size={"longest_edge": 4 * 32}, max_image_size={"longest_edge": 32},
                                            do_image_splitting=True)
    processor = SmolVLMProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=SmolVLMVideoProcessor(), image_seq_len=4,
                                 chat_template=SMOLVLM_TEMPLATE)
    config = SmolVLMConfig(
        text_config=dict(model_type="llama", vocab_size=len(vocab), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=8192, initializer_range=0.2, bos_token_id=ids["<|im_start|>"],
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|im_end|>"]),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, initializer_range=0.2),
        scale_factor=2, image_token_id=ids["<image>"], pad_token_id=ids["<|im_end|>"])
    torch.manual_seed(seed)
    model = SmolVLMForConditionalGeneration(config)
    # eos is <|im_end|> only: the engine must find <end_of_utterance> from the chat template.
    model.generation_config = GenerationConfig(bos_token_id=ids["<|im_start|>"], eos_token_id=[ids["<|im_end|>"]],
                                               pad_token_id=ids["<|im_end|>"])
    processor.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


FAMILIES = {"qwen2_5_vl": build_qwen2_5_vl, "smolvlm2": build_smolvlm2}
