"""``movieid train``: fine-tune IDA-VLM on ID-reference conversations (full or LoRA, one GPU or
many through torchrun + FSDP2), resumable, saved in the published checkpoint layout."""
from .trainer import Summary, TrainOptions, train

__all__ = ["Summary", "TrainOptions", "train"]
