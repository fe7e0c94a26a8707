"""movieid batch: discovery, manifests, the journal (resume, changes, kills), failure isolation,
and parallel runs (processes and a local Ray instance) giving exactly the serial results."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from movieid.batch import BatchOptions, find_jobs, run_batch, status
from movieid.batch.jobs import looks_like_video
from movieid.config import Config, EngineConfig, FaceConfig, WindowConfig

from .conftest import REPO, lavfi_film, run_cli
from .helpers.processes import descendants, wait_gone


def _cut(source, out, start, frames):
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", f"{start / 25:.2f}", "-i", str(source), "-frames:v",
                    str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-f", "mp4", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def archive(cardgame, tmp_path_factory):
    """Real films (pieces of the card-game film) mixed with files that are not films."""
    path, _, _ = cardgame
    root = tmp_path_factory.mktemp("archive")
    _cut(path, root / "season1" / "ep1.mp4", 0, 90)           # Rachel, then Ross and Chandler
    _cut(path, root / "season2" / "ep1.mp4", 173, 40)         # same name, other folder: Joey
    _cut(path, root / "season2" / "clip", 90, 40)             # no extension: found by content
    (root / "extras").mkdir()
    (root / "extras" / "notes.txt").write_text("not a film")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=1",
                    str(root / "extras" / "song.m4a")], check=True)   # MP4 container, audio only
    (root / ".trash").mkdir()
    shutil.copy(root / "season1" / "ep1.mp4", root / ".trash" / "old.mp4")
    return root


def config(tmp_path, workers=1, **sections) -> Config:
    return Config(faces=FaceConfig(backend="dlib"), workers=workers, cache_dir=str(tmp_path / "cache"), **sections)


def options(tmp_path, workers=1, **kw) -> BatchOptions:
    return BatchOptions(config=config(tmp_path, workers), **kw)


def load(out, key):
    doc = json.loads((out / key).read_text())
    doc.pop("created")
    return doc


def test_films_are_found_by_content_and_outputs_mirror_the_layout(archive, tmp_path, package_cast):
    jobs = find_jobs(archive, tmp_path / "out", package_cast)
    assert [j.key for j in jobs] == ["season1/ep1.mp4", "season2/clip", "season2/ep1.mp4"]
    assert {j.output_dir.relative_to(tmp_path / "out").as_posix() for j in jobs} == {"season1", "season2"}
    assert looks_like_video((archive / "season2" / "clip").read_bytes()[:64])
    assert not looks_like_video(b"%PDF-1.7 hello")


def test_same_stem_in_one_folder_gets_full_names(tmp_path, archive):
    folder = tmp_path / "src"
    folder.mkdir()
    shutil.copy(archive / "season1" / "ep1.mp4", folder / "a.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(folder / "a.mp4"), "-c", "copy", str(folder / "a.mkv")],
                   check=True)
    assert sorted(j.stem for j in find_jobs(folder, tmp_path / "out", None)) == ["a.mkv", "a.mp4"]


def test_a_named_pipe_or_broken_link_named_like_a_film_fails_and_is_never_opened(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    lavfi_film(src / "good.mp4", "-c:v", "libx264", "-pix_fmt", "yuv420p", duration=1.0)
    os.mkfifo(src / "pipe.mp4")          # opening it for reading would block for ever
    os.mkfifo(src / "notes")             # not named like a film: its content cannot be looked at, so not one
    (src / "sub" / "gone.mkv").symlink_to(tmp_path / "nowhere.mkv")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "movieid", "batch", str(src), "-o", str(out), "--workers", "1",
                           "--face-backend", "dlib"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    reasons = {e.key: (e.state, e.reason) for e in status(out)}
    assert reasons.keys() == {"good.mp4", "pipe.mp4", "sub/gone.mkv"}
    assert reasons["good.mp4"][0] == "done"
    assert reasons["pipe.mp4"] == ("failed", f"{src / 'pipe.mp4'}: is a named pipe, not a regular video file")
    assert reasons["sub/gone.mkv"] == ("failed", f"{src / 'sub' / 'gone.mkv'}: is a broken symbolic link, "
                                                 "not a video file")
    # the same words as annotate gives for each of them
    for key in ("pipe.mp4", "sub/gone.mkv"):
        alone = run_cli("annotate", src / key, "-o", tmp_path / "alone")
        assert alone.returncode == 1 and alone.stderr == f"movieid: error: {reasons[key][1]}\n"
    # each failure once, its file named once: as it failed (above the bars), and counted at the end
    assert proc.stderr.count(reasons["pipe.mp4"][1]) == 1 and proc.stderr.count(str(src / "pipe.mp4")) == 1
    assert "  failed: the 2 films named above; movieid batch-status" in proc.stdout and "pipe.mp4" not in proc.stdout


def test_batch_resumes_redoes_changes_and_isolates_failures(archive, tmp_path, package_cast):
    cast_dir = package_cast
    src = tmp_path / "src"
    shutil.copytree(archive, src)
    broken = src / "season2" / "broken.mp4"
    data = (src / "season1" / "ep1.mp4").read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    out = tmp_path / "out"

    first = run_batch(src, out, cast_dir, options(tmp_path))
    assert (first.done, first.failed, first.skipped) == (3, 1, 0) and not first.ok
    assert first.failures[0][0] == "season2/broken.mp4" and "broken.mp4" in first.failures[0][1]
    season1 = load(out, "season1/ep1.json")
    assert [s["names"] for s in season1["shots"]] == [["Rachel"], ["Ross", "Chandler"]]
    assert [s["names"] for s in load(out, "season2/ep1.json")["shots"]] == [["Joey"]]
    assert not (out / "season2" / "broken.srt").exists()

    again = run_batch(src, out, cast_dir, options(tmp_path))
    assert (again.done, again.skipped, again.failed, again.failed_before) == (0, 3, 0, 1)

    shutil.copy(src / "season2" / "ep1.mp4", src / "season1" / "ep1.mp4")   # the film changed
    changed = run_batch(src, out, cast_dir, options(tmp_path))
    assert (changed.done, changed.skipped) == (1, 2)
    assert [s["names"] for s in load(out, "season1/ep1.json")["shots"]] == [["Joey"]]

    broken.unlink()
    retried = run_batch(src, out, cast_dir, options(tmp_path, retry_failed=True))
    assert retried.ok and retried.skipped == 3
    states = {e.key: e.state for e in status(out)}
    assert states == {"season1/ep1.mp4": "done", "season2/clip": "done", "season2/ep1.mp4": "done",
                      "season2/broken.mp4": "gone"}

    other = BatchOptions(config=config(tmp_path, windows=WindowConfig(max_images=4)))
    assert run_batch(src, out, cast_dir, other).done == 3   # new settings: all redone


def test_manifests_give_each_film_its_cast_and_title(archive, tmp_path, package_cast):
    small_cast = tmp_path / "cast_rachel"
    shutil.copytree(package_cast / "Rachel", small_cast / "Rachel")
    manifest = tmp_path / "films.csv"
    manifest.write_text(f"film,cast,title\n{archive / 'season1' / 'ep1.mp4'},{small_cast},Pilot\n"
                        f"{archive / 'season2' / 'ep1.mp4'},,\n")
    out = tmp_path / "out"
    summary = run_batch(manifest, out, package_cast, options(tmp_path))
    assert summary.ok and summary.done == 2
    pilot = load(out, "season1/ep1.json")
    assert pilot["film"]["title"] == "Pilot" and [m["name"] for m in pilot["cast"]["members"]] == ["Rachel"]
    assert [s["names"] for s in pilot["shots"]][0] == ["Rachel"]
    assert "Ross" not in json.dumps(pilot["shots"])
    assert len(load(out, "season2/ep1.json")["cast"]["members"]) == 6   # the default cast

    jsonl = tmp_path / "films.jsonl"
    jsonl.write_text(json.dumps({"film": str(archive / "season2" / "clip"), "title": "Clip"}) + "\n")
    assert run_batch(jsonl, tmp_path / "out2", None, options(tmp_path)).done == 1

    bad = tmp_path / "bad.csv"
    bad.write_text("path,who\nx.mp4,y\n")
    proc = run_cli("batch", bad, "-o", tmp_path / "out3")
    assert proc.returncode == 1 and "'film' column" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_worker_processes_give_the_serial_results(archive, tmp_path, package_cast):
    cast_dir = package_cast
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    run_batch(archive, serial, cast_dir, options(tmp_path))
    summary = run_batch(archive, parallel, cast_dir, options(tmp_path, workers=2))
    assert summary.ok and summary.done == 3
    for key in ("season1/ep1.json", "season2/ep1.json", "season2/clip.json"):
        a, b = load(serial, key), load(parallel, key)
        a.pop("settings"), b.pop("settings")    # face workers per film differ by design
        assert a == b, key


def test_ray_gives_the_serial_results(archive, tmp_path, package_cast):
    cast_dir = package_cast
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install -e '.[ray]')")
    serial, distributed = tmp_path / "serial", tmp_path / "ray"
    run_batch(archive, serial, cast_dir, options(tmp_path))
    summary = run_batch(archive, distributed, cast_dir, options(tmp_path, workers=2, ray="local"))
    assert summary.ok and summary.done == 3
    for key in ("season1/ep1.json", "season2/ep1.json", "season2/clip.json"):
        a, b = load(serial, key), load(distributed, key)
        a.pop("settings"), b.pop("settings")
        assert a == b, key


def test_killing_the_batch_loses_only_the_film_in_flight(archive, tmp_path, package_cast):
    cast_dir = package_cast
    src = tmp_path / "src"
    for k in range(4):
        (src / f"part{k}").mkdir(parents=True)
        shutil.copy(archive / "season1" / "ep1.mp4", src / f"part{k}" / "film.mp4")
    out = tmp_path / "out"
    env = {**os.environ, "MOVIEID_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "movieid", "batch", str(src), "-o", str(out), "--cast",
                             str(cast_dir), "--face-backend", "dlib", "-q"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / ".movieid-batch.sqlite"
    deadline = time.time() + 300
    children: set[int] = set()
    try:
        while time.time() < deadline and proc.poll() is None:
            children |= descendants(proc.pid)
            try:
                with sqlite3.connect(journal) as db:
                    if db.execute("SELECT count(*) FROM films WHERE state='done'").fetchone()[0] >= 1:
                        break
            except sqlite3.Error:          # not created yet
                pass
            time.sleep(0.05)
        children |= descendants(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert children, "the batch started no worker processes"
    assert not wait_gone(children), "worker processes outlived the killed batch"
    with sqlite3.connect(journal) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        states = dict(db.execute("SELECT key, state FROM films").fetchall())
    done = [k for k, s in states.items() if s == "done"]
    assert 1 <= len(done) < 4
    for key in done:                                   # what is marked done is complete
        folder = out / key.rsplit("/", 1)[0]
        assert json.loads((folder / "film.json").read_text())["shots"]
        assert (folder / "film.srt").read_text().strip()
    resumed = run_batch(src, out, cast_dir, options(tmp_path))
    assert resumed.ok and resumed.skipped == len(done) and resumed.done == 4 - len(done)
    assert not list(out.rglob("*.tmp"))


def _terminated():
    from movieid.stop_signals import Terminated
    raise Terminated()                     # as the command line's SIGTERM handler raises it


def _terminated_in_an_import():
    try:
        _terminated()
    except BaseException as stop:          # as a C extension being imported turns it into an ImportError
        raise ImportError("initialization failed") from stop


@pytest.mark.parametrize("stop", [_terminated, _terminated_in_an_import], ids=["sigterm", "sigterm-in-an-import"])
def test_sigterm_during_a_film_stops_the_batch_and_is_not_the_films_failure(archive, tmp_path, package_cast,
                                                                           monkeypatch, stop):
    from movieid.batch import runner
    from movieid.stop_signals import Terminated

    calls = []
    analyse = runner.analyse

    def analysed_until_stopped(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            stop()
        return analyse(*args, **kwargs)
    monkeypatch.setattr(runner, "analyse", analysed_until_stopped)
    out = tmp_path / "out"
    with pytest.raises(Terminated):
        run_batch(archive, out, package_cast, options(tmp_path))
    with sqlite3.connect(out / ".movieid-batch.sqlite") as db:
        states = sorted(state for (state,) in db.execute("SELECT state FROM films"))
    assert "failed" not in states and "interrupted" in states, states
    monkeypatch.setattr(runner, "analyse", analyse)
    resumed = run_batch(archive, out, package_cast, options(tmp_path))
    assert resumed.ok and resumed.failed == 0


def test_batch_status_and_ray_without_ray(archive, tmp_path, package_cast):
    cast_dir = package_cast
    out = tmp_path / "out"
    run_batch(archive, out, cast_dir, options(tmp_path))
    proc = run_cli("batch-status", out)
    assert proc.returncode == 0 and proc.stdout.count("done") == 3
    assert "3 done, 0 failed" in proc.stderr
    missing = run_cli("batch-status", tmp_path / "nothing")
    assert missing.returncode == 1 and "no batch journal" in missing.stderr

    blocker = tmp_path / "no_ray"
    blocker.mkdir()
    (blocker / "ray.py").write_text("raise ImportError('No module named ray')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    proc = run_cli("batch", archive, "-o", tmp_path / "out_ray", "--ray", "local", env=env)
    assert proc.returncode == 1 and "pip install" in proc.stderr and "Traceback" not in proc.stderr


def test_ray_captions_on_gpu_actors_with_the_vlm_engine(archive, tmp_path, package_cast):
    cast_dir = package_cast
    """Ray schedules by declared resources, so two logical GPUs on this CPU machine exercise the
    GPU-actor path (one captioning actor per GPU, the tiny model on the CPU)."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install -e '.[ray]')")
    pytest.importorskip("torch", reason="the ida-vlm engine needs PyTorch")
    from tests.helpers.tiny_ida_vlm import build_tiny_checkpoint

    model = build_tiny_checkpoint(tmp_path / "model-base")
    vlm = config(tmp_path, engine=EngineConfig(name="ida-vlm", model=str(model), device="cpu", max_new_tokens=6))
    serial = run_batch(archive, tmp_path / "serial", cast_dir, BatchOptions(config=vlm))
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert int(ray.cluster_resources()["GPU"]) == 2
        distributed = run_batch(archive, tmp_path / "ray", cast_dir,
                                BatchOptions(config=vlm.replace(workers=2), ray="auto"))
    finally:
        ray.shutdown()
    assert serial.ok and distributed.ok and distributed.done == 3
    for key in ("season1/ep1.json", "season2/ep1.json", "season2/clip.json"):
        a, b = load(tmp_path / "serial", key), load(tmp_path / "ray", key)
        assert b["engine"]["name"] == "ida-vlm"
        assert [s["caption"] for s in a["shots"]] == [s["caption"] for s in b["shots"]]


def test_a_models_own_input_error_is_the_films_failure_not_a_bug():
    from movieid.batch.runner import _reason
    from movieid.models.ida_vlm.errors import IdaVlmError

    error = IdaVlmError("config.json does not fit the weights", "/ckpt/model-base/config.json")
    assert _reason(error) == "/ckpt/model-base/config.json: config.json does not fit the weights"
    assert _reason(KeyError("x")).startswith("internal error")
