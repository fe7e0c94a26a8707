"""The pipeline's options, shared by ``annotate`` and ``batch``, and their translation into a
``Config``. Each flag maps to one config field; a ``ConfigError`` comes back as a usage error
naming the flag (exit 2)."""
from __future__ import annotations

from pathlib import Path

import click

from movieid.config import (DETECTOR_THRESHOLDS, ENGINES, FACE_BACKENDS, FORMAT_CHOICES, FORMATS, MORE_FACES, CastConfig,
                            Config,
                            ConfigError, EngineConfig, FaceConfig, IdentityConfig, OutputConfig, ShotConfig,
                            WindowConfig)

from .common import FiniteFloat

# config field -> the flag that sets it
FLAGS = {
    "shots.detector": "--detector", "shots.threshold": "--threshold", "shots.min_shot_len": "--min-shot-len",
    "shots.max_shot_len": "--max-shot-len", "faces.backend": "--face-backend", "faces.models": "--face-models",
    "faces.size": "--face-size", "faces.min_face": "--min-face", "faces.more_faces": "--more-faces", "cast.strict": "--cast-strict",
    "identity.min_confidence": "--min-confidence",
    "windows.frames_per_shot": "--frames-per-shot", "windows.max_images": "--max-images",
    "engine.name": "--engine", "engine.model": "--model", "engine.variant": "--variant",
    "engine.device": "--device", "engine.batch_size": "--batch-size", "engine.max_new_tokens": "--max-new-tokens",
    "engine.mark_faces": "--mark-faces", "engine.max_pixels": "--vlm-max-pixels",
    "outputs.formats": "--format", "outputs.overwrite": "--overwrite", "outputs.min_duration": "--min-duration",
    "outputs.ad": "--ad", "outputs.reading_speed": "--reading-speed", "workers": "--workers",
    "cache_dir": "--cache-dir",
}


def _stack(*options):
    """One decorator applying ``options`` in order (as if written one above the other)."""
    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func
    return decorate


shot_options = _stack(
    click.option("--detector", type=click.Choice(tuple(DETECTOR_THRESHOLDS)), default="adaptive",
                 show_default=True, help="PySceneDetect detector."),
    click.option("--threshold", type=FiniteFloat(0), default=None,
                 help="Cut threshold (default: adaptive 3.0, content 27.0)."),
    click.option("--min-shot-len", type=FiniteFloat(0), default=0.1, show_default=True,
                 help="Shortest shot in seconds (flash cuts above this are kept)."),
    click.option("--max-shot-len", type=FiniteFloat(0), default=10.0, show_default=True,
                 help="Split longer shots into parts of at most this many seconds (0: never)."),
)

face_options = _stack(
    click.option("--face-backend", type=click.Choice(FACE_BACKENDS), default="auto", show_default=True,
                 help="auto: insightface when its models are present, else dlib."),
    click.option("--face-models", type=click.Path(path_type=Path), default=None,
                 help="insightface model pack folder (default: ~/.insightface/models/buffalo_l)."),
    click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="Where cast embeddings are cached (default: $MOVIEID_CACHE_DIR or ~/.cache/movieid)."),
)

# The options annotate and batch share: engine, shots, windows, faces, cast, outputs.
pipeline_options = _stack(
    click.option("--engine", type=click.Choice(ENGINES), default="faces", show_default=True,
                 help="faces: offline captions from face recognition; ida-vlm: the ID-aware VLM; "
                      "vlm: an open VLM through transformers (Qwen2.5-VL, SmolVLM2, ...)."),
    click.option("--model", default=None, help="ida-vlm: checkpoint folder or hub id (jiyatai/IDA-VLM); "
                                               "vlm: model folder or hub id (Qwen/Qwen2.5-VL-7B-Instruct)."),
    click.option("--variant", type=click.Choice(["base", "idf"]), default=None,
                 help="ida-vlm: checkpoint variant (default: base)."),
    click.option("--device", default=None, help="ida-vlm, vlm: torch device (default: cuda if available)."),
    click.option("--batch-size", type=click.IntRange(min=1), default=None,
                 help="ida-vlm: shots per generation batch (default: as many as the free GPU memory holds)."),
    click.option("--max-new-tokens", type=click.IntRange(min=1), default=64, show_default=True,
                 help="ida-vlm, vlm: longest caption in tokens."),
    click.option("--mark-faces", is_flag=True,
                 help="vlm: draw the recognised faces as coloured boxes on the test frames, colours named "
                      "in the prompt."),
    click.option("--vlm-max-pixels", type=click.IntRange(min=28 * 28), default=None,
                 help="vlm: most pixels per image after the processor's resize, which bounds its image "
                      "tokens (default: 200704 = 448x448)."),
    shot_options,
    click.option("--frames-per-shot", type=click.IntRange(min=1), default=3, show_default=True,
                 help="Keyframes (test frames) per shot."),
    click.option("--max-images", type=click.IntRange(min=2), default=8, show_default=True,
                 help="Images per window, cast ID images included (IDA-VLM was trained with 8)."),
    face_options,
    click.option("--face-size", type=click.IntRange(min=64), default=1280, show_default=True,
                 help="Longest side of frames for face analysis, in pixels."),
    click.option("--min-face", type=click.IntRange(min=1), default=40, show_default=True,
                 help="Smallest face analysed (pixels, at --face-size)."),
    click.option("--more-faces", type=click.Choice(MORE_FACES), default=FaceConfig.more_faces, show_default=True,
                 help="Where the second face detector (turned, covered, dark faces; dlib: its CNN) runs: where "
                      "a shot's keyframes show nobody or disagree on how many people there are, on every "
                      "analysed frame, or nowhere (README: how names are decided)."),
    click.option("--cast-strict/--no-cast-strict", default=True, show_default=True,
                 help="Fail on a cast photo without exactly one face, or skip it with a warning."),
    click.option("--min-confidence", type=FiniteFloat(0), default=IdentityConfig.min_confidence, show_default=True,
                 help="Give a cast name only at this confidence or above (0..1; README: how names are decided)."),
    click.option("--format", "formats", type=click.Choice(FORMAT_CHOICES), multiple=True,
                 help="Output formats (repeatable; default: srt, vtt and json). html: the review page; "
                      "csv: one row per shot; otio: an OpenTimelineIO timeline with a marker per shot."),
    click.option("--ad", is_flag=True,
                 help="Also write an audio-description track (FILM.ad.vtt / FILM.ad.srt) placed in the pauses "
                      "between speech (needs the ad extra: pip install -c constraints.txt -e '.[ad]')."),
    click.option("--reading-speed", type=FiniteFloat(1), default=15.0, show_default=True,
                 help="--ad: characters per second a description line needs."),
    click.option("--min-duration", type=FiniteFloat(0), default=1.0, show_default=True,
                 help="Shortest time in seconds a subtitle stays on screen (every text track)."),
    click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
                 help="Face-analysis processes (0: one per CPU core); batch: films analysed at once."),
)


def shot_config(detector, threshold, min_shot_len, max_shot_len) -> ShotConfig:
    return _built(lambda: ShotConfig(detector=detector, threshold=threshold, min_shot_len=min_shot_len,
                                     max_shot_len=max_shot_len))


def build_config(engine, model, variant, device, batch_size, max_new_tokens, mark_faces, vlm_max_pixels, detector,
                 threshold, min_shot_len, max_shot_len, frames_per_shot, max_images, face_backend, face_models,
                 cache_dir, face_size, min_face, more_faces, cast_strict, min_confidence, formats, ad, reading_speed,
                 min_duration, workers, overwrite=False) -> Config:
    """The flags of annotate or batch as a validated ``Config``."""
    if ad:
        from movieid.speech import model_path

        model_path()   # no voice-activity model: fail before any work
    shots = shot_config(detector, threshold, min_shot_len, max_shot_len)
    return _built(lambda: Config(
        shots=shots,
        faces=FaceConfig(backend=face_backend, models=None if face_models is None else str(face_models),
                         size=face_size, min_face=min_face, more_faces=more_faces),
        cast=CastConfig(strict=cast_strict),
        identity=IdentityConfig(min_confidence=min_confidence),
        windows=WindowConfig(frames_per_shot=frames_per_shot, max_images=max_images),
        engine=EngineConfig(name=engine, model=model, variant=variant, device=device, batch_size=batch_size,
                            max_new_tokens=max_new_tokens, mark_faces=mark_faces, max_pixels=vlm_max_pixels),
        outputs=OutputConfig(formats=tuple(dict.fromkeys(formats or FORMATS)), overwrite=overwrite,
                             min_duration=min_duration, ad=ad, reading_speed=reading_speed),
        workers=workers, cache_dir=None if cache_dir is None else str(cache_dir)))


def _built(make):
    try:
        return make()
    except ConfigError as exc:
        flag = FLAGS.get(exc.field, exc.field)
        problem = str(exc)[len(exc.field):].strip()
        raise click.UsageError(f"{flag}: {problem}") from None
