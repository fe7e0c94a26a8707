"""The vlm engine on tiny random models of two families (Qwen2.5-VL, SmolVLM2), built from configs with
real processors and the published chat templates, saved and loaded back from their folders."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from .conftest import REPO, run_cli

pytest.importorskip("torch", reason="the vlm engine needs PyTorch (pip install -e '.[hf]')")
pytest.importorskip("transformers", reason="the vlm engine needs transformers (pip install -e '.[hf]')")
pytest.importorskip("torchvision", reason="Qwen2-VL and SmolVLM processors need torchvision (pip install -e '.[hf]')")

from movieid.engines.text import GENERAL_INSTRUCTION, INSTRUCTION  # noqa: E402
from movieid.models.errors import InputError  # noqa: E402
from movieid.models.hf_vlm import FaceMark, IdImage, TestFrame, VlmCaptioner, VlmWindow  # noqa: E402
from movieid.models.hf_vlm.marks import PALETTE, draw_marks, line_width  # noqa: E402

FAMILIES = ["qwen2_5_vl", "smolvlm2"]
TEST_PIXELS = 64 * 64     # small images: Qwen2.5-VL up to 4 tokens, SmolVLM2 up to 2x2 tiles + global


@pytest.fixture(scope="session")
def tiny_vlms(tmp_path_factory) -> dict[str, Path]:
    from tests.helpers.tiny_hf_vlm import FAMILIES as BUILDERS

    root = tmp_path_factory.mktemp("tiny_vlm")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def _captioner(folder: Path, **options) -> VlmCaptioner:
    options = {"device": "cpu", "max_pixels": TEST_PIXELS, "max_new_tokens": 6, **options}
    return VlmCaptioner(folder, INSTRUCTION, GENERAL_INSTRUCTION, **options)


def _image(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


ALICE, BOB = IdImage("Alice", _image(1, 40, 30)), IdImage("Bob", _image(2, 90, 120))


def _windows() -> list[VlmWindow]:
    """Windows of different lengths: two, one and no ID images, one to three test frames."""
    frames = [TestFrame(_image(10 + i, 54, 96)) for i in range(3)]
    return [VlmWindow((ALICE, BOB), tuple(frames)), VlmWindow((BOB,), tuple(frames[:1])),
            VlmWindow((), tuple(frames[1:])), VlmWindow((ALICE,), tuple(frames[:2]))]


def _image_token_counts(captioner: VlmCaptioner, images: list) -> list[int]:
    """Image tokens the processor gives each image on its own."""
    counts = []
    image_token = captioner.processor.image_token_id
    for image in images:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}]
        text = captioner.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = captioner.processor(text=[text], images=[[image]], return_tensors="pt")["input_ids"][0]
        counts.append(int((ids == image_token).sum()))
    return counts


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_holds_each_window_image_once_in_order_with_names_first(tiny_vlms, family):
    captioner = _captioner(tiny_vlms[family])
    window = _windows()[0]
    messages, images = captioner.messages(window)
    kinds = [c["type"] if c["type"] == "image" else c["text"] for c in messages[0]["content"]]
    assert kinds == ["Alice is ", "image", "\nBob is ", "image", "\nWatching the following images ", "image",
                     "\n", "image", "\n", "image", "\n" + INSTRUCTION]
    expected = [ALICE.pixels, BOB.pixels] + [f.pixels for f in window.frames]
    assert len(images) == 5 and all(np.array_equal(np.asarray(a), b) for a, b in zip(images, expected))

    # The model's template writes its own image placeholder once per image, after each name.
    prompt = captioner.prompt(window)
    placeholder = captioner.processor.image_token
    pieces = prompt.split(placeholder)
    assert len(pieces) == 6
    specials = sorted(captioner.tokenizer.all_special_tokens, key=len, reverse=True)

    def plain(text: str) -> str:
        for token in specials:
            text = text.replace(token, "")
        return text

    assert plain(pieces[0]).endswith("Alice is ") and plain(pieces[1]) == "\nBob is "
    assert plain(pieces[2]) == "\nWatching the following images " and plain(pieces[3]) == plain(pieces[4]) == "\n"
    assert plain(pieces[5]).startswith("\n" + INSTRUCTION)

    # Token level: every image expanded exactly once (Qwen2.5-VL: one run per image, in order).
    inputs = captioner._inputs([(messages, images)])
    ids = inputs["input_ids"][0]
    counts = _image_token_counts(captioner, images)
    assert int((ids == captioner.processor.image_token_id).sum()) == sum(counts)
    if family == "qwen2_5_vl":
        is_image = (ids == captioner.processor.image_token_id).tolist()
        runs, length = [], 0
        for flag in is_image + [False]:
            if flag:
                length += 1
            elif length:
                runs.append(length)
                length = 0
        assert runs == counts and len(set(counts)) > 1   # distinct sizes, so the order is checked


@pytest.mark.parametrize("family", FAMILIES)
def test_images_stay_within_the_pixel_budget(tiny_vlms, family):
    big = _image(3, 300, 400)
    small = _captioner(tiny_vlms[family], max_pixels=32 * 32)
    large = _captioner(tiny_vlms[family], max_pixels=TEST_PIXELS)
    few, many = _image_token_counts(small, [big])[0], _image_token_counts(large, [big])[0]
    assert few < many
    if family == "qwen2_5_vl":   # 28x28 pixels per token
        assert many <= TEST_PIXELS // (28 * 28) and small.image_budget == "max_pixels"
    else:                        # 32-px tiles of 4 tokens: 1 tile, or 2x2 tiles and the global image
        assert (few, many) == (4, 5 * 4) and small.image_budget == "tiles"
    assert large.settings()["max_pixels"] == TEST_PIXELS


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_generation_equals_one_window_at_a_time(tiny_vlms, family):
    captioner = _captioner(tiny_vlms[family], batch_size=4)
    windows = _windows()
    batched = captioner.caption(windows)
    captioner.batch_size = 1
    alone = [captioner.caption([w])[0] for w in windows]
    assert batched == alone
    assert len(set(batched)) > 1          # different windows, different answers: the test can fail

    # ID images encoded once and reused give what the processor's own pixel path gives.
    assert captioner.features is not None and captioner.settings()["id_images_encoded_once"]
    captioner.features, captioner.batch_size = None, 4
    assert captioner.caption(windows) == batched


@pytest.mark.parametrize("family", FAMILIES)
def test_id_images_are_encoded_once_per_cast(tiny_vlms, family):
    captioner = _captioner(tiny_vlms[family])
    features = captioner.features
    encoded, preprocessed = [], []
    run, preprocess = features._run, features.image_processor

    def counted(inputs, count):
        features = run(inputs, count)
        if features is not None:
            encoded.append(count)
        return features

    features._run = counted
    features.image_processor = lambda images, **kw: preprocessed.append(len(images)) or preprocess(images, **kw)
    windows = _windows()
    frames = sum(len(w.frames) for w in windows)
    captioner.caption(windows)
    assert sum(encoded) == frames + 2                       # Alice and Bob, then every test frame
    encoded.clear(), preprocessed.clear()
    captioner.caption(windows)
    assert sum(encoded) == frames                           # the cast comes from the cache
    if family == "qwen2_5_vl":   # test frames are cut from the batch's pixels, not preprocessed again
        assert preprocessed == []
    else:                        # SmolVLM's tiles cannot be cut per image: preprocessed one by one
        assert preprocessed == [1] * frames


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_is_greedy_and_stops_at_the_templates_end_of_turn(tiny_vlms, family):
    captioner = _captioner(tiny_vlms[family])
    gc = captioner.generation_config
    assert gc.do_sample is False and gc.num_beams == 1 and gc.max_new_tokens == 6
    if family == "qwen2_5_vl":   # the checkpoint asks for sampling (as published): left as it is, not used
        assert captioner.model.generation_config.do_sample is True and gc.repetition_penalty == 1.05
    end = {"qwen2_5_vl": "<|im_end|>", "smolvlm2": "<end_of_utterance>"}[family]
    assert captioner.tokenizer.convert_tokens_to_ids(end) in gc.eos_token_id
    assert captioner.tokenizer.padding_side == "left"


def _marked_frame() -> TestFrame:
    return TestFrame(np.full((120, 200, 3), 128, np.uint8),
                     (FaceMark("Alice", (20.4, 30.0, 70.0, 90.2)), FaceMark("Bob", (120.0, 10.0, 180.0, 60.0))))


def test_face_marks_are_boxes_in_named_colours_at_the_faces():
    frame = _marked_frame()
    colours = {"Alice": PALETTE[0], "Bob": PALETTE[1]}
    drawn = draw_marks(frame, colours)
    width = line_width(120, 200)
    for (x1, y1, x2, y2), (_, rgb) in [((20, 30, 70, 90), PALETTE[0]), ((120, 10, 180, 60), PALETTE[1])]:
        for x, y in [(x1, y1), (x2, y2), (x1, (y1 + y2) // 2), ((x1 + x2) // 2, y2), (x1 + width - 1, y1 + 10)]:
            assert tuple(drawn[y, x]) == rgb, (x, y)
        assert tuple(drawn[(y1 + y2) // 2, (x1 + x2) // 2]) == (128, 128, 128)   # the face itself is not covered
    outside = np.ones((120, 200), bool)
    outside[30:91, 20:71] = outside[10:61, 120:181] = False
    assert (drawn[outside] == 128).all() and (frame.pixels == 128).all()


def test_mark_faces_on_a_real_photo_boxes_the_detected_faces():
    """The boxes land on the faces dlib finds in a real photo (insightface's group portrait)."""
    from movieid.faces import load_backend
    from movieid.models.images import load_rgb

    build_sample = _build_sample_module()
    photo = load_rgb(build_sample.package_photo("insightface", "data", "images", "t1.jpg"))
    faces = load_backend("dlib").detect(photo)
    assert len(faces) >= 5
    marks = tuple(FaceMark(f"P{i}", (f.box.x1, f.box.y1, f.box.x2, f.box.y2)) for i, f in enumerate(faces))
    colours = {m.name: PALETTE[i % len(PALETTE)] for i, m in enumerate(marks)}
    drawn = draw_marks(TestFrame(photo, marks), colours)
    changed = np.any(drawn != photo, axis=2)
    for mark in marks:
        x1, y1, x2, y2 = (round(v) for v in mark.box)
        rgb = colours[mark.name][1]
        assert tuple(drawn[y1, (x1 + x2) // 2]) == rgb and tuple(drawn[y2, (x1 + x2) // 2]) == rgb
        assert tuple(drawn[(y1 + y2) // 2, x1]) == rgb and tuple(drawn[(y1 + y2) // 2, x2]) == rgb
    inside_any = np.zeros(changed.shape, bool)
    for mark in marks:
        x1, y1, x2, y2 = (round(v) for v in mark.box)
        inside_any[y1:y2 + 1, x1:x2 + 1] = True
    assert not changed[~inside_any].any()     # nothing drawn away from the faces


@pytest.mark.parametrize("family", FAMILIES)
def test_mark_faces_names_the_colours_in_the_prompt(tiny_vlms, family):
    window = VlmWindow((ALICE, BOB), (_marked_frame(), TestFrame(np.full((120, 200, 3), 128, np.uint8))))
    plain = _captioner(tiny_vlms[family])
    messages, images = plain.messages(window)
    assert "outlined" not in plain.prompt(window) and (np.asarray(images[2]) == 128).all()
    marked = _captioner(tiny_vlms[family], mark_faces=True)
    messages, images = marked.messages(window)
    assert messages[0]["content"][-1]["text"] == "\nFaces are outlined: Alice (red), Bob (blue). " + INSTRUCTION
    assert tuple(np.asarray(images[2])[30, 45]) == PALETTE[0][1] and (np.asarray(images[3]) == 128).all()
    assert marked.settings()["mark_faces"] is True and len(marked.caption([window])) == 1


def test_a_bad_model_folder_is_one_clear_error(tiny_vlms, tmp_path):
    with pytest.raises(InputError, match="no config.json"):
        _captioner(tmp_path)
    with pytest.raises(InputError, match="no such model folder"):
        _captioner(tmp_path / "missing")
    text_only = tmp_path / "text-only"
    text_only.mkdir()
    (text_only / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 10}))
    with pytest.raises(InputError) as error:
        _captioner(text_only)
    assert str(text_only) in str(error.value) and "\n" not in str(error.value)
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in tiny_vlms["qwen2_5_vl"].iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(InputError, match="cannot load the model") as error:
        _captioner(broken)
    assert "\n" not in str(error.value)
    if not __import__("torch").cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            _captioner(tiny_vlms["qwen2_5_vl"], device="cuda")


def test_an_uncached_hub_id_offline_fails_at_once_with_the_fetch_command(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(InputError) as error:
        _captioner("Qwen/Qwen2.5-VL-7B-Instruct")
    message = str(error.value)
    assert message.startswith("Qwen/Qwen2.5-VL-7B-Instruct: ") and "offline" in message
    assert "hf download Qwen/Qwen2.5-VL-7B-Instruct --local-dir DIR" in message


# ----------------------------------------------------------------------------- end to end

def _build_sample_module():
    spec = importlib.util.spec_from_file_location("build_sample", REPO / "sample_videos" / "build_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photo_film(films, tmp_path_factory):
    """Three shots from photos that ship in installed packages: Rachel alone, Ross with Chandler,
    a rocket (nobody); and the sample cast."""
    from movieid.filmmaker import FilmSpec, ShotSpec, make_film

    build = _build_sample_module()
    t1 = build.package_photo("insightface", "data", "images", "t1.jpg")
    astronaut = build.package_photo("skimage", "data", "astronaut.png")
    rocket = build.package_photo("skimage", "data", "rocket.jpg")
    cast = tmp_path_factory.mktemp("vlm_cast") / "cast"
    build.build_cast(t1, astronaut, cast)
    shots = [ShotSpec(t1, 30, "static", ("Rachel",), crop=build.crop(0, 250, 270, 152)),
             ShotSpec(t1, 30, "static", ("Ross", "Chandler"), crop=build.crop(400, 250, 500, 281)),
             ShotSpec(rocket, 25, "static", ())]
    return make_film(FilmSpec(shots, width=480, height=270, fps=25), films / "vlm_photos.mp4"), cast


@pytest.mark.parametrize("family", FAMILIES)
def test_annotate_with_the_vlm_engine_writes_valid_srt_vtt_json(tiny_vlms, photo_film, family, tmp_path):
    import srt
    import webvtt

    from movieid.annotation import validate

    film, cast = photo_film
    out = tmp_path / "out"
    proc = run_cli("annotate", film, "--cast", cast, "-o", out, "--engine", "vlm", "--model", tiny_vlms[family],
                   "--device", "cpu", "--max-new-tokens", "8", "--vlm-max-pixels", str(TEST_PIXELS), "--mark-faces",
                   "--face-backend", "dlib", "--workers", "1", "-q",
                   env={**os.environ, "MOVIEID_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "vlm_photos.json").read_text())
    validate(doc)
    engine = doc["engine"]
    assert engine["name"] == "vlm" and engine["model"] == str(tiny_vlms[family])
    assert engine["model_type"] == {"qwen2_5_vl": "qwen2_5_vl", "smolvlm2": "smolvlm"}[family]
    assert len(engine["config_sha256"]) == 64 and engine["revision"] is None
    assert (engine["dtype"], engine["device"], engine["decoding"]) == ("float32", "cpu", "greedy")
    assert engine["max_pixels"] == TEST_PIXELS and engine["mark_faces"] is True
    assert doc["settings"]["engine"]["mark_faces"] is True
    shots = doc["shots"]
    assert [s["names"] for s in shots] == [["Rachel"], ["Ross", "Chandler"], []]
    for shot in shots:
        assert shot["caption"] and set(shot["unverified_names"]) <= set(shot["caption_names"])
        assert not set(shot["unverified_names"]) & set(shot["names"])
        assert set(shot["names"]) <= {w["name"] for w in shot["window"] if w["role"] == "id"}
    cues = list(srt.parse((out / "vlm_photos.srt").read_text()))
    assert [c.content for c in cues] == [s["caption"] for s in shots]
    assert len(webvtt.read(str(out / "vlm_photos.vtt")).captions) == len(shots)


def test_annotate_with_a_bad_model_folder_fails_in_one_line_and_writes_nothing(photo_film, tmp_path):
    film, _ = photo_film
    bad = tmp_path / "not-a-model"
    bad.mkdir()
    proc = run_cli("annotate", film, "--engine", "vlm", "--model", bad, "-o", tmp_path / "out",
                   "--face-backend", "dlib", "--workers", "1")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"movieid: error: {bad}: not a transformers model folder: "
                                                "no config.json in it"]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    usage = run_cli("annotate", film, "--engine", "vlm")
    assert usage.returncode == 2 and "--model" in usage.stderr
    offline = run_cli("annotate", film, "--engine", "vlm", "--model", "Qwen/Qwen2.5-VL-7B-Instruct", "-o",
                      tmp_path / "out", "--face-backend", "dlib", "--workers", "1",
                      env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert offline.returncode == 1 and len(offline.stderr.strip().splitlines()) == 1, offline.stderr
    assert offline.stderr.startswith("movieid: error: Qwen/Qwen2.5-VL-7B-Instruct: not in the local Hugging Face cache")
    assert "hf download Qwen/Qwen2.5-VL-7B-Instruct --local-dir DIR" in offline.stderr


@pytest.mark.parametrize("overlapped", [False, True], ids=["after-the-analysis", "overlapping-it"])
def test_names_the_faces_did_not_see_are_marked_unverified(tiny_vlms, photo_film, tmp_path, monkeypatch, overlapped):
    """A caption naming someone face recognition did not find in the shot keeps the name, flagged;
    also when the answer comes before the film's names are decided (checked against the final ones)."""
    from movieid.annotation import shot_annotation_json
    from movieid.config import Config, EngineConfig, FaceConfig
    from movieid.engines import load_engine
    from movieid.engines.vlm import VlmEngine
    from movieid.face_stage import face_pool
    from movieid.faces import load_backend
    from movieid.pipeline import analyse, annotate, caption, cast_for
    from movieid.video import probe

    film, cast = photo_film
    config = Config(faces=FaceConfig(backend="dlib"), workers=1, cache_dir=str(tmp_path / "cache"),
                    engine=EngineConfig(name="vlm", model=str(tiny_vlms["qwen2_5_vl"]), device="cpu",
                                        max_new_tokens=4, max_pixels=TEST_PIXELS))
    monkeypatch.setattr(VlmCaptioner, "caption", lambda self, windows: ["Rachel deals cards to Joey."] * len(windows))
    if overlapped:
        result = annotate(film, cast, config)
    else:
        engine = load_engine(config.engine)
        assert isinstance(engine, VlmEngine)
        backend = load_backend("dlib")
        with face_pool(config, backend) as pool:
            analysis = analyse(probe(film), cast_for(cast, backend, config), backend, config, pool)
        result = caption(analysis, engine)
    first = shot_annotation_json(result.shots[0])
    assert first["names"] == ["Rachel"]
    assert first["caption_names"] == ["Rachel", "Joey"] and first["unverified_names"] == ["Joey"]
    assert shot_annotation_json(result.shots[2])["unverified_names"] == ["Rachel", "Joey"]


def test_face_boxes_are_scaled_from_film_pixels_to_the_test_frames(tiny_vlms):
    """The pipeline gives face boxes in film pixels and test frames at engine size (here half)."""
    from movieid.config import EngineConfig
    from movieid.engines.base import CaptionRequest
    from movieid.engines.vlm import VlmEngine
    from movieid.records import (Appearance, Box, Cast, Face, Keyframe, Shot, ShotPeople, Track, Window,
                                 WindowImage)

    engine = VlmEngine(EngineConfig(name="vlm", model=str(tiny_vlms["qwen2_5_vl"]), device="cpu",
                                    max_pixels=TEST_PIXELS, mark_faces=True))
    engine.start(Cast(None, (), "test", "key"))
    shot = Shot(0, 0, 10, 0.0, 0.4, 0)
    seen = Face(5, 0.2, Box(100, 40, 300, 240), 1.0, np.zeros(4, np.float32))
    other = Face(7, 0.28, Box(0, 0, 50, 50), 1.0, np.zeros(4, np.float32))
    people = ShotPeople(shot, (Keyframe(5, 0.2),), (
        Appearance(Track((seen, other)), "Alice", None, 0.95, (0.95, 0.95), np.zeros(0)),
        Appearance(Track((seen,)), None, "Unknown 1", 0.5, (0.5,), np.zeros(0))))
    window = Window(shot, (WindowImage("test", frame=5, time=0.2),))
    request = CaptionRequest(window, people, {5: np.zeros((270, 480, 3), np.uint8)}, film_size=(960, 540))
    marks = engine._window(request).frames[0].faces
    assert [(m.name, m.box) for m in marks] == [("Alice", (50.0, 20.0, 150.0, 120.0))]   # named people only
    assert engine.settings()["mark_faces"] is True and engine.settings()["name"] == "vlm"
