"""``movieid train`` for real (subprocesses, a tiny checkpoint in the published layout, real face
photos): the published output and its log, bad samples, LoRA with an ID-Former started from base,
resuming after a kill, and two gloo processes under torchrun giving the loss of one."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from movieid.errors import MovieIdError
from movieid.models.ida_vlm import IdaVlm
from movieid.training import TrainOptions, train
from movieid.training.data import draw_order, read_stage
from tests.helpers.training_data import MAX_LENGTH, build_small_checkpoint, conversation, write_samples

from .conftest import REPO, run_cli

BAD = [conversation("bad-missing-image", "Bob is <img>cast/Nobody/none.jpg</img>\n In the image: "
                                         "<img>probes/obama1.jpg</img>\n What is Bob doing?", "Bob waits."),
       {"id": "bad-no-answer", "conversations": [{"from": "user", "value": "What is this?"}]},
       conversation("bad-nine-images", "".join(f"<img>probes/obama{1 + k % 3}.jpg</img>" for k in range(9)), "x")]


@pytest.fixture(scope="module")
def material(tmp_path_factory, faces_dir):
    root = tmp_path_factory.mktemp("train")
    checkpoint = build_small_checkpoint(root / "base")
    samples = write_samples(root / "data" / "samples.json", extra=BAD)
    options = ["--steps", "4", "--batch-size", "2", "--lr", "5e-3", "--max-length", MAX_LENGTH,
               "--save-every", "2", "--data-root", str(faces_dir)]
    return root, checkpoint, samples, options


def _command(material, output, *extra, quiet=True):
    _, checkpoint, samples, options = material
    return ["train", "--model", checkpoint, "--data", samples, "-o", output, *options, *extra,
            *(["-q"] if quiet else [])]


def _log(output):
    return [json.loads(line) for line in (output / "train_log.jsonl").read_text().splitlines()]


def _weights(folder, variant="base"):
    return IdaVlm.from_pretrained(folder, variant=variant, device="cpu").state_dict()


@pytest.fixture(scope="module")
def reference(material):
    """An uninterrupted full-tuning run (its images loaded by a worker process)."""
    output = material[0] / "reference"
    proc = run_cli(*_command(material, output, "--workers", "1", quiet=False))
    assert proc.returncode == 0, proc.stderr
    return output, proc


def test_run_writes_a_published_checkpoint_a_log_and_the_skipped_samples(reference, material):
    output, proc = reference
    log = _log(output)
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(r["tokens_per_s"] > 0 and r["lr"] > 0 and r["tokens"] > 0 for r in log)
    assert log[-1]["loss"] < log[0]["loss"]
    skipped = [json.loads(line) for line in (output / "skipped.jsonl").read_text().splitlines()]
    assert {s["id"]: s["problem"].split()[0] for s in skipped} == {
        "bad-missing-image": "missing", "bad-no-answer": "no", "bad-nine-images": "9"}
    assert "left out 3 bad samples" in proc.stderr
    assert {"config.json", "generation_config.json", "qwen.tiktoken", "model.safetensors.index.json"} <= {
        p.name for p in output.iterdir()}
    trained, base = _weights(output), _weights(material[1])
    assert trained.keys() == base.keys()
    assert torch.equal(trained["transformer.visual.conv1.weight"], base["transformer.visual.conv1.weight"])
    assert not torch.equal(trained["lm_head.weight"], base["lm_head.weight"])
    assert not any((output / "state").glob("step-*"))  # the resume state goes once the run is done
    again = run_cli(*_command(material, output, quiet=False))
    assert again.returncode == 0 and "already finished (4 steps)" in again.stdout


def test_the_engine_loads_the_trained_checkpoint(reference):
    from movieid.config import EngineConfig
    from movieid.engines.ida_vlm import IdaVlmEngine

    engine = IdaVlmEngine(EngineConfig(name="ida-vlm", model=str(reference[0]), device="cpu"))
    assert engine.model.variant == "base" and engine.model.config.hidden_size == 128


def test_lora_on_an_idf_model_started_from_base(material, tmp_path):
    output = tmp_path / "lora"
    proc = run_cli(*_command(material, output, "--lora", "--lora-rank", "4", "--variant", "idf", "--steps", "2",
                             "--workers", "0"))
    assert proc.returncode == 0, proc.stderr
    assert (output / "adapter" / "adapter_config.json").is_file()
    assert json.loads((output / "adapter" / "adapter_config.json").read_text())["r"] == 4
    trained, base = _weights(output, "idf"), _weights(material[1])
    assert set(trained) - set(base) == {k for k in trained if ".attn_pool.attn1." in k}
    changed = {k for k in base if not torch.equal(trained[k], base[k])}
    targets = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.w1.weight", "mlp.w2.weight")
    assert changed == {k for k in base if k.startswith("transformer.h.") and k.endswith(targets)}
    assert trained["transformer.visual.attn_pool.attn1.out_proj.weight"].abs().sum() > 0  # it trains from zero


def test_a_killed_run_resumes_from_its_last_saved_step(reference, material, tmp_path):
    output = tmp_path / "killed"
    command = [sys.executable, "-m", "movieid", *map(str, _command(material, output, "--workers", "0"))]
    proc = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (output / "state" / "step-00000002" / "meta.json").is_file():
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before saving step 2"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # nothing of the killed run is left
    assert [r["step"] for r in _log(output)][:2] == [1, 2]
    resumed = run_cli(*_command(material, output, "--workers", "0", quiet=False))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at step" in resumed.stdout
    log, expected = _log(output), _log(reference[0])
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    np.testing.assert_allclose([r["loss"] for r in log], [r["loss"] for r in expected], atol=1e-6)
    mine, theirs = _weights(output), _weights(reference[0])
    assert all(torch.allclose(mine[k], theirs[k], atol=1e-6) for k in mine)


def test_two_gloo_processes_give_the_loss_of_one(reference, material, tmp_path):
    output = tmp_path / "fsdp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "movieid", *map(str, _command(material, output, "--workers", "0"))]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    log, single = _log(output), _log(reference[0])
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert [r["tokens"] for r in log] == [r["tokens"] for r in single]  # the same samples, split over two
    np.testing.assert_allclose([r["loss"] for r in log], [r["loss"] for r in single], atol=1e-5)
    sharded, one, base = _weights(output), _weights(reference[0]), _weights(material[1])
    difference = sum(float(((sharded[k] - one[k]) ** 2).sum()) for k in one) ** 0.5
    update = sum(float(((one[k] - base[k]) ** 2).sum()) for k in one) ** 0.5
    assert difference < 1e-3 * update  # Adam turns float rounding of tiny gradients into small steps


def test_strict_fails_on_bad_samples_in_one_line(material, tmp_path):
    proc = run_cli(*_command(material, tmp_path / "strict", "--strict"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr
    assert "3 bad samples (--strict)" in lines[0] and "bad-missing-image: missing image" in lines[0]
    assert str(material[2]) in lines[0]


def test_another_run_in_the_same_output_is_refused(reference, material, faces_dir, tmp_path):
    _, checkpoint, samples, _ = material
    options = dict(model=str(checkpoint), data=samples, steps=4, batch_size=2, lr=5e-3, save_every=2,
                   max_length=int(MAX_LENGTH), data_root=faces_dir)
    with pytest.raises(MovieIdError, match=r"holds a run with other settings \(lr\)"):
        train(TrainOptions(output=reference[0], **{**options, "lr": 1e-3}))
    with pytest.raises(MovieIdError, match="must not be the checkpoint being trained"):
        train(TrainOptions(output=checkpoint, **options))
    with pytest.raises(MovieIdError, match="training data not found"):
        train(TrainOptions(output=tmp_path / "y", **{**options, "data": tmp_path / "none.json"}))


def test_a_run_refused_for_its_options_leaves_nothing(material, tmp_path):
    """A batch far bigger than the data (it drew the whole order up front and grew to 24 GB), an
    output that is a file, and bad samples under --strict: one line each, and no run folder or
    train_config.json left to tie the output to a run that never started."""
    cases = [(("--steps", "1", "--batch-size", "1000000000"), "samples drawn; one run draws at most"),
             (("--strict",), "3 bad samples (--strict)")]
    for extra, problem in cases:
        output = tmp_path / "run"
        proc = run_cli(*_command(material, output), *extra)   # the last of a repeated option counts
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and problem in lines[0], proc.stderr
        assert "internal error" not in proc.stderr and not output.exists()
    (tmp_path / "a-file").write_text("mine")
    proc = run_cli(*_command(material, tmp_path / "a-file"))
    assert proc.returncode == 1 and "a-file: is not a folder" in proc.stderr and "internal error" not in proc.stderr
    assert (tmp_path / "a-file").read_text() == "mine"


def test_usage_errors_exit_2(material, tmp_path):
    proc = run_cli(*_command(material, tmp_path / "x", "--epochs", "2"))
    assert proc.returncode == 2 and "--steps or --epochs" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_stage_config_mixes_its_sources_by_weight(tmp_path):
    (tmp_path / "a.json").write_text("[]")
    (tmp_path / "b.jsonl").write_text("")
    config = {"data_root": "images", "sources": [{"path": "a.json", "weight": 3},
                                                 {"path": "b.jsonl", "data_root": "other"}]}
    (tmp_path / "stage.yaml").write_text(yaml.safe_dump(config))
    first, second = read_stage(tmp_path / "stage.yaml")
    assert (first.weight, first.data_root) == (3.0, tmp_path / "images")
    assert (second.weight, second.data_root) == (1.0, tmp_path / "other")
    order = draw_order([5, 7], [3, 1], 4000, seed=1)
    share = np.mean(order[:, 0] == 0)
    assert 0.72 < share < 0.78
    for source, size in ((0, 5), (1, 7)):  # shuffled passes: every sample once per pass
        walk = order[order[:, 0] == source, 1]
        passes = walk[:len(walk) // size * size].reshape(-1, size)
        assert all(sorted(p) == list(range(size)) for p in passes)
    assert np.array_equal(order, draw_order([5, 7], [3, 1], 4000, seed=1))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"sources": [{"path": "a.json", "weight": -1}]}))
    with pytest.raises(MovieIdError, match="weight must be a positive number"):
        read_stage(tmp_path / "bad.yaml")
