"""The end of a run: the trained weights gathered on the main process, LoRA merged (its adapters
also saved, in peft's layout, under ``adapter/``), written in the published checkpoint layout."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from ..models.ida_vlm import IdaVlm
from ..models.ida_vlm.saving import checkpoint_dtype, save_published
from ..models.ida_vlm.training import lora_config, merge_lora
from .distributed import Processes

ADAPTER_DIR = "adapter"


def export_checkpoint(module: nn.Module, model: IdaVlm, options, source: Path, output: Path,
                      processes: Processes) -> list[Path]:
    """Write ``output`` as a checkpoint in the dtype of ``source`` (every process takes part in
    gathering; the main one writes). Returns the files written."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not processes.main:
        return []
    weights = {key.removeprefix("model."): tensor for key, tensor in full.items()}
    if options.lora:
        config = lora_config(options.lora_rank, options.lora_alpha, options.lora_dropout, options.lora_targets)
        weights = merge_lora(weights, model, config, output / ADAPTER_DIR)
    return save_published(weights, source, output, checkpoint_dtype(source))
