"""What a run keeps so that a killed run resumes from its last saved step: the trainable weights
and the optimizer (torch.distributed.checkpoint, sharded per process under FSDP, plain with one
process), the schedule's position and each process's random state, in ``OUTPUT/state/step-N``.
A state is written under a temporary name and renamed when complete, so a kill while saving
leaves the previous state as the latest."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn

from ..errors import MovieIdError, first_line
from .distributed import Processes, barrier

STATE = "state"
FINISHED = "finished.json"


def saved_steps(output: Path) -> list[tuple[int, Path]]:
    """Complete states in ``output``, oldest first."""
    folder = output / STATE
    if not folder.is_dir():
        return []
    found = [(int(path.name.removeprefix("step-")), path) for path in folder.glob("step-*")
             if path.name.removeprefix("step-").isdigit() and (path / "meta.json").is_file()]
    return sorted(found)


def save(output: Path, step: int, module: nn.Module, optimizer: torch.optim.Optimizer,
         scheduler, processes: Processes, keep: int = 1) -> Path:
    """Save the state after ``step`` optimizer steps; every process takes part."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    final = output / STATE / f"step-{step:08d}"
    staging = final.with_name(final.name + ".saving")
    if processes.main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier(processes)
    model_state, optim_state = get_state_dict(module, optimizer,
                                              options=StateDictOptions(ignore_frozen_params=True))
    dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=staging)
    torch.save(_rng_state(), staging / f"rng-{processes.rank}.pt")
    barrier(processes)
    if processes.main:
        (staging / "meta.json").write_text(json.dumps({"step": step, "scheduler": scheduler.state_dict()}))
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        for _, old in saved_steps(output)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(processes)
    return final


def load(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
         processes: Processes) -> int:
    """Restore a state saved by ``save``; returns its step."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

    meta = json.loads((path / "meta.json").read_text())
    model_state, optim_state = get_state_dict(module, optimizer, options=StateDictOptions(ignore_frozen_params=True))
    state = {"model": model_state, "optim": optim_state}
    try:
        dcp.load(state, checkpoint_id=path)
    except Exception as error:  # a state from other settings or a damaged folder
        raise MovieIdError(f"cannot resume from this state: {first_line(error)}", path) from error
    set_state_dict(module, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
                   options=StateDictOptions(ignore_frozen_params=True, strict=False))
    scheduler.load_state_dict(meta["scheduler"])
    rng = path / f"rng-{processes.rank}.pt"
    if rng.is_file():
        _set_rng_state(torch.load(rng, weights_only=False))
    return int(meta["step"])


def _rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


class TrainLog:
    """``train_log.jsonl``: one line per optimizer step (written by the main process). On resume,
    lines past the resumed step are dropped: those steps run again."""

    def __init__(self, path: Path, resume_step: int, enabled: bool):
        self.path, self.enabled = path, enabled
        if enabled and path.is_file():
            kept = [line for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip() and _step_of(line) is not None and _step_of(line) <= resume_step]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None
