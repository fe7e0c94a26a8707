"""Probe a film and read its frames.

``probe`` asks ffprobe what the file is and turns every way it can be unusable into a
one-line ``MovieIdError``. ``FrameReader`` reads frames by index, in batches, in display
orientation (rotation and non-square pixels applied) at a size the caller picks: decord
does the work, except for files where it is not frame-exact or cannot decode (MPEG-TS/PS,
MP4 edit lists, AV1), which are read through an ffmpeg pipe. ``scan`` is the one
sequential decoding pass, through ffmpeg.

Frame times are presentation times on the file's timeline (what a player shows):
the frame's timestamp relative to the container start, so a video stream that starts
late keeps its offset and variable-frame-rate files get each frame's real time. They always
advance: a jump in an MPEG-TS is carried across as FFmpeg does (``_playback_times``).
"""
from __future__ import annotations

import json
import logging
import collections
import os
import queue
import re
import shlex
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .errors import MovieIdError, first_line
from .files import check_input_file
from .records import Film
from .stop_signals import Terminated

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 120
# Containers ffprobe reports for single pictures: a film must move.
STILL_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe",
                       "gif_pipe", "j2k_pipe", "pgm_pipe", "ppm_pipe", "svg_pipe", "jpegxl_pipe",
                       "qoi_pipe", "dpx_pipe", "exr_pipe", "psd_pipe", "pam_pipe", "pbm_pipe"}


def media_url(path: str | Path) -> str:
    """How a file is named to FFmpeg and decord: FFmpeg would read ``cache:a.mp4`` through its
    cache protocol (another file) and ``-a.mp4`` as an option, so always its ``file:`` protocol
    and an absolute path."""
    return "file:" + str(Path(path).absolute())


def stop_if_signalled(code: int | None, stderr: str, path: Path) -> None:
    """A decoder that a signal stopped (killed by it, or FFmpeg's own handler: exit 255, which
    FFmpeg gives only after a signal, "received signal N" at its info level) says nothing about
    the film: a Ctrl-C of the process group reaches
    FFmpeg even when movieid ignores it (started as a background job of a script), and that
    film must come out interrupted, not corrupt. SIGINT is raised as Ctrl-C, SIGTERM and SIGHUP
    as termination; another signal is the run's failure, naming it, not the film's."""
    import signal

    signum = -code if code is not None and code < 0 else None
    said = re.search(r"received signal (\d+)", stderr)
    if signum is None and code == 255:
        signum = int(said.group(1)) if said else signal.SIGINT
    if signum is None:
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    if signum in (signal.SIGTERM, signal.SIGHUP):
        raise Terminated
    raise MovieIdError(f"FFmpeg was stopped by {signal.Signals(signum).name} while decoding "
                       "(not a fault of the film)", path)


def _run_ffprobe(path: Path, args: list[str]) -> str:
    cmd = ["ffprobe", "-v", "error", *args, media_url(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise MovieIdError("ffprobe was not found: install FFmpeg (Debian: apt-get install ffmpeg)") from None
    except subprocess.TimeoutExpired:
        raise MovieIdError(f"ffprobe gave no answer within {PROBE_TIMEOUT_S} s", path) from None
    if proc.returncode != 0:
        stop_if_signalled(proc.returncode, proc.stderr, path)
        reason = _last_line(proc.stderr, path) or f"ffprobe exit code {proc.returncode}"
        raise MovieIdError(f"not a video file FFmpeg can read ({reason})", path)
    return proc.stdout


def _probe_json(path: Path) -> dict:
    """ffprobe's description of the container and its streams."""
    return json.loads(_run_ffprobe(path, ["-print_format", "json", "-show_format", "-show_streams"]) or "{}")


def has_video_stream(path: Path) -> bool | None:
    """Whether FFmpeg finds a video stream (not a cover picture) in a file; None when it cannot
    read the file at all (a cheap check for finding films among other files)."""
    try:
        info = _probe_json(Path(path))
    except MovieIdError:
        return None
    return _pick_video_stream(info.get("streams") or []) is not None


def _last_line(text: str, path: Path | None = None) -> str:
    """The last message FFmpeg printed, without the path it prefixes (taken off before the text
    is split into lines: a file name may hold a newline)."""
    text = text or ""
    for name in ([] if path is None else [media_url(path), str(path)]):
        text = re.sub(f"(?m)^{re.escape(name)}: ", "", text)
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith("Last message repeated")]
    return lines[-1] if lines else ""


def _ratio(text: str | None) -> Fraction | None:
    try:
        num, den = (int(x) for x in str(text).replace(":", "/").split("/"))
        return Fraction(num, den) if num > 0 and den > 0 else None
    except (ValueError, ZeroDivisionError):
        return None


def _rotation(stream: dict) -> int:
    """Degrees (0/90/180/270) the decoder turns frames clockwise for display."""
    rot = 0.0
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            rot = float(side["rotation"])
    if not rot and "rotate" in (stream.get("tags") or {}):
        rot = -float(stream["tags"]["rotate"])
    # ffprobe's display-matrix rotation is counter-clockwise.
    return int(round(-rot / 90.0)) % 4 * 90


def _pick_video_stream(streams: list[dict]) -> dict | None:
    videos = [s for s in streams if s.get("codec_type") == "video"
              and not (s.get("disposition") or {}).get("attached_pic")]
    if not videos:
        return None
    defaults = [s for s in videos if (s.get("disposition") or {}).get("default")]
    return (defaults or videos)[0]


def probe(path: str | Path) -> Film:
    """Describe a video file, or raise a one-line ``MovieIdError`` saying why it is unusable."""
    path = Path(path)
    size_bytes = check_input_file(path, "video file").st_size
    info = _probe_json(path)
    fmt = info.get("format") or {}
    container = str(fmt.get("format_name", ""))
    if container in STILL_IMAGE_FORMATS:
        raise MovieIdError("is a still image, not a video", path)
    stream = _pick_video_stream(info.get("streams") or [])
    if stream is None:
        kinds = sorted({s.get("codec_type", "?") for s in info.get("streams") or []})
        has = f" (it has only {', '.join(kinds)})" if kinds else ""
        raise MovieIdError(f"has no video stream{has}", path)
    coded_w, coded_h = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if coded_w <= 0 or coded_h <= 0:
        raise MovieIdError("video stream has no frame size (corrupt header?)", path)
    sar = _ratio(stream.get("sample_aspect_ratio")) or Fraction(1)
    width, height = max(2, round(coded_w * sar)), coded_h
    rotation = _rotation(stream)
    if rotation in (90, 270):
        width, height = height, width
    rate = _ratio(stream.get("avg_frame_rate")) or _ratio(stream.get("r_frame_rate")) or Fraction(25)
    fmt_start = float(fmt.get("start_time") or 0.0)
    stream_start = float(stream.get("start_time") or fmt_start)
    start_offset = max(0.0, stream_start - fmt_start)

    nominal = 1.0 / float(rate)
    reader_kind, timestamps = _frame_timestamps(path, container, stream, nominal)
    if len(timestamps) == 0:
        raise MovieIdError("video stream has no frames", path)
    _check_complete(path, stream, fmt, info.get("streams") or [], timestamps)
    timestamps = _playback_times(path, container, timestamps, nominal)
    # decord reports float32 seconds; 0.1 ms steps are finer than any frame rate needs.
    timestamps = np.round(timestamps + start_offset, 4)
    deltas = np.diff(timestamps)
    if len(deltas):
        frame_duration = float(np.median(deltas))
        vfr = bool(np.ptp(deltas) > max(0.002, 0.1 * frame_duration)) if len(deltas) > 1 else False
    else:
        frame_duration = nominal
        vfr = False
    fps = (len(timestamps) - 1) / float(timestamps[-1] - timestamps[0]) if len(deltas) and timestamps[-1] > timestamps[0] else float(rate)
    return Film(path=path, size_bytes=size_bytes, container=container,
                codec=str(stream.get("codec_name", "?")), width=width, height=height,
                rotation=rotation, fps=float(fps), vfr=vfr, start_offset=start_offset,
                timestamps=timestamps, frame_duration=frame_duration, reader=reader_kind)


# Containers whose index lets decord seek to the exact frame. Elsewhere (MPEG-TS, MPEG-PS, ...)
# decord's random access returns wrong frames, so those files are read through ffmpeg.
DECORD_CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "flv", "asf"}


def _frame_timestamps(path: Path, container: str, stream: dict, nominal: float) -> tuple[str, np.ndarray]:
    """Frame start times relative to the video stream start, and which reader gives them.

    An MP4 edit list can hide frames before the part that is presented. decord then lists
    the hidden frames' (negative) timestamps and its seeks count them while its sequential
    reads do not, so such files are read through ffmpeg, which agrees with players.
    """
    if container in DECORD_CONTAINERS:
        try:
            vr = _open_decord(path, 64, 64)
        except _DecordOpenError as exc:
            log.info("decord cannot open %s (%s); reading it through ffmpeg", path, exc)
        else:
            try:
                n = len(vr)
                ts = vr.get_frame_timestamp(list(range(n)))[:, 0].astype(np.float64) if n else np.zeros(0)
                if n:
                    with _quiet_stderr():
                        vr.get_batch([0])  # the first frame must decode
            except Exception as exc:  # decord raises its own error types while decoding
                raise MovieIdError(f"video data is corrupt or truncated ({_short(exc)})", path) from None
            finally:
                del vr
            if not (ts < -5e-4).any():
                return "decord", ts
            log.info("%s has frames hidden by an edit list; reading it through ffmpeg", path)
    return "ffmpeg", _ffprobe_frame_times(path, stream, nominal)


_DECORD_PREFIX = re.compile(r"\[\d\d:\d\d:\d\d\] \S+\.(?:cc|h):\d+: ")


def _short(exc: BaseException) -> str:
    """decord's messages carry C++ source locations and check expressions; keep the gist."""
    text = _DECORD_PREFIX.sub("", first_line(exc))
    if "Check failed" in text or "av_read_frame" in text:
        return "the decoder rejected the data"
    return text[:160] or type(exc).__name__


# The demuxers FFmpeg marks AVFMT_TS_DISCONT (timestamps may restart or jump): MPEG-TS/PS, Ogg and
# a few others, whose timestamps restart where recordings were joined (``cat a.ts b.ts``) or a
# broadcast capture skipped. FFmpeg's command line carries the timeline on across such a jump
# (a remux with ``-c copy`` continues one frame after the frame before the jump).
DISCONTINUOUS_CONTAINERS = {"mpegts", "mpegtsraw", "mpeg", "ogg", "hls", "m4v", "dhav", "ty", "live_flv"}
MAX_TIMESTAMP_JUMP_S = 10.0   # FFmpeg's -dts_delta_threshold: a longer step ahead is a jump too


def _playback_times(path: Path, container: str, times: np.ndarray, nominal: float) -> np.ndarray:
    """Frame times that always advance, on the timeline a player (and an FFmpeg remux) gives.

    Where the container allows discontinuities, a frame that does not come after the one before,
    or comes more than ``MAX_TIMESTAMP_JUMP_S`` after it, is put one frame (the typical step) after
    it, and the frames that follow move with it. Elsewhere such a frame means the file's times
    cannot be trusted: it is refused, naming the frame, with a command that re-times the frames
    (a ``-c copy`` remux would keep the frames piled up at one time).
    """
    steps = np.diff(times)
    stuck = steps <= 0
    if container in DISCONTINUOUS_CONTAINERS:
        jumps = stuck | (steps > MAX_TIMESTAMP_JUMP_S)
        if not jumps.any():
            return times
        regular = steps[~jumps]
        frame = float(np.median(regular)) if len(regular) else nominal
        log.info("%s: timestamps restart or jump at %d frames (joined recordings?); times carry on across them",
                 path, int(jumps.sum()))
        return times + np.concatenate([[0.0], np.cumsum(np.where(jumps, frame - steps, 0.0))])
    if stuck.any():
        i = int(np.argmax(stuck)) + 1
        source = path.absolute()    # never read by FFmpeg as an option or a protocol
        fixed = source.with_name(f"{source.stem}.retimed.mkv")
        raise MovieIdError(f"frame timestamps do not advance: frame {i} is at {times[i]:.3f} s, not after "
                           f"frame {i - 1} ({times[i - 1]:.3f} s); re-time the frames first, e.g. "
                           f"ffmpeg -i {shlex.quote(str(source))} -vf setpts=N/FRAME_RATE/TB "
                           f"{shlex.quote(str(fixed))}", path)
    return times


def _check_complete(path: Path, stream: dict, fmt: dict, streams: list, timestamps: np.ndarray) -> None:
    """A file whose frames stop well before its header says is truncated.

    Times here are the container's, as the file's own timestamps give them (not yet carried
    across jumps): FFmpeg measures the header's duration up to the latest of them, which in a
    joined MPEG-TS need not be the last frame's. The video stream's own duration counts from its
    start (MP4); Matroska's per-stream ``DURATION`` tag is where the stream ends. Only a file with
    no other stream falls back to the container's duration (that of a longer audio track, else).
    """
    stream_start = float(stream.get("start_time") or fmt.get("start_time") or 0.0)
    tagged_end = _tag_seconds(stream, "DURATION")
    if stream.get("duration"):
        declared = stream_start + float(stream["duration"])
    elif tagged_end is not None:
        declared = tagged_end
    elif len(streams) == 1 and fmt.get("duration"):
        declared = float(fmt.get("start_time") or 0.0) + float(fmt["duration"])
    else:
        return
    if declared <= stream_start or len(timestamps) == 0:
        return
    ends = stream_start + float(timestamps.max() - timestamps[0])
    if ends < declared - max(1.0, 0.05 * (declared - stream_start)):
        raise MovieIdError(f"video data is corrupt or truncated: the header says {declared - stream_start:.1f} s "
                           f"but frames stop at {ends - stream_start:.1f} s", path)


def _tag_seconds(stream: dict, name: str) -> float | None:
    """A ``HH:MM:SS.fraction`` tag (Matroska's ``DURATION``) in seconds."""
    text = str((stream.get("tags") or {}).get(name) or "")
    try:
        hours, minutes, seconds = text.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _ffprobe_frame_times(path: Path, stream: dict, step: float) -> np.ndarray:
    """Decode once with ffprobe to learn each frame's time (packet counts can differ). A frame
    without a timestamp (a raw H.264 or HEVC stream carries none) comes ``step`` (the nominal
    frame duration) after the one before, as players show it."""
    out = _run_ffprobe(path, ["-threads", "0", "-select_streams", str(stream.get("index", 0)),
                              "-show_entries", "frame=best_effort_timestamp_time", "-of", "json"])
    try:
        frames = json.loads(out or "{}").get("frames") or []
    except json.JSONDecodeError:
        raise MovieIdError("ffprobe returned unreadable frame data", path) from None
    times: list[float | None] = []
    for frame in frames:
        try:
            times.append(float(frame["best_effort_timestamp_time"]))
        except (KeyError, TypeError, ValueError):
            times.append(None)
    known = [i for i, t in enumerate(times) if t is not None]
    if not times:
        return np.zeros(0)
    filled = np.empty(len(times))
    previous = times[known[0]] - (known[0] + 1) * step if known else -step
    for i, t in enumerate(times):
        previous = filled[i] = previous + step if t is None else t
    start = float(stream.get("start_time") or filled[0])
    return filled - start


class _DecordOpenError(Exception):
    pass


def _open_decord(path: Path, width: int = -1, height: int = -1, threads: int = 0):
    import decord

    decord.logging.set_level(decord.logging.QUIET)
    try:
        with _quiet_stderr():
            return decord.VideoReader(media_url(path), width=width, height=height, num_threads=threads)
    except Exception as exc:
        raise _DecordOpenError(_short(exc)) from None


class _quiet_stderr:
    """decord's C++ core logs straight to file descriptor 2; keep the terminal clean."""

    def __enter__(self):
        try:
            self._saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        except OSError:
            self._saved = None
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)


def fit_size(width: int, height: int, max_side: int | None, even: bool = True) -> tuple[int, int]:
    """Scale (width, height) down so the longer side is at most ``max_side``."""
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = width * scale, height * scale
    w, h = max(2, int(round(width))), max(2, int(round(height)))
    if even:
        w, h = w - w % 2, h - h % 2
    return max(2, w), max(2, h)


class FrameReader:
    """Frames of one film at one output size, as RGB uint8 arrays [height, width, 3].

    ``read`` is random access: decord decodes forward through a sorted batch without
    re-seeking (about one decoding pass for a film's keyframes in order). decord keeps
    decoding ahead into an unbounded queue after a batch, so each ``read`` opens its own
    decord reader and drops it. ``stream`` is a sequential pass through an ffmpeg pipe,
    whose back-pressure keeps memory at a few frames whatever the film's length.
    Not thread-safe; open one per thread or process.
    """

    def __init__(self, film: Film, max_side: int | None = None, size: tuple[int, int] | None = None,
                 threads: int = 0):
        self.film = film
        self.size = size or fit_size(film.width, film.height, max_side)
        self.threads = threads
        self._ffmpeg: _FfmpegSource | None = None

    def close(self) -> None:
        """Stop a running ffmpeg process."""
        if self._ffmpeg is not None:
            self._ffmpeg.close()
            self._ffmpeg = None

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self, indices: Sequence[int]) -> list[np.ndarray]:
        """The frames at ``indices`` (any order; duplicates allowed)."""
        if not len(indices):
            return []
        order = sorted(set(int(i) for i in indices))
        for i in (order[0], order[-1]):
            if not 0 <= i < self.film.frame_count:
                raise IndexError(f"frame {i} outside 0..{self.film.frame_count - 1}")
        if self.film.reader == "ffmpeg":
            if self._ffmpeg is None:
                self._ffmpeg = _FfmpegSource(self.film, self.size)
            frames = self._ffmpeg.read_sorted(order)
        else:
            frames = self._decord_read(order)
        by_index = dict(zip(order, frames))
        return [by_index[int(i)] for i in indices]

    def _decord_read(self, order: list[int]) -> list[np.ndarray]:
        try:
            vr = _open_decord(self.film.path, self.size[0], self.size[1], self.threads)
        except _DecordOpenError as exc:
            raise MovieIdError(f"cannot open video ({exc})", self.film.path) from None
        try:
            with _quiet_stderr():
                batch = vr.get_batch(order).asnumpy()
        except Exception as exc:  # decord raises its own error types while decoding
            when = format_time(self.film.time(order[0]))
            raise MovieIdError(f"video data is corrupt or truncated: decoding failed near frame {order[0]} "
                               f"({when}): {_short(exc)}", self.film.path) from None
        finally:
            del vr
        return [self._sized(frame) for frame in batch]

    def _sized(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        if (w, h) != self.size:  # decord sizes in display orientation; guard anyway
            import cv2
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        return frame

    def stream(self, pix_fmt: str = "rgb24") -> Iterator[tuple[int, np.ndarray]]:
        """Every frame in order, one at a time (``bgr24`` for OpenCV)."""
        for frame in scan(self.film, self.size, pix_fmt):
            yield frame.index, frame.small


def scan(film: Film, size: tuple[int, int], pix_fmt: str = "bgr24",
         large_size: tuple[int, int] | None = None, large_every: int = 0) -> Iterator[ScanFrame]:
    """One decoding pass: every frame small, and every ``large_every``-th frame also large.

    Memory stays at a few frames: ffmpeg waits while the caller works on a frame.
    """
    source = _FfmpegSource(film, size, pix_fmt, large_size, large_every)
    try:
        yield from source.frames()
    finally:
        source.close()


def format_time(seconds: float) -> str:
    """HH:MM:SS.mmm for messages and tables."""
    ms = int(round(max(0.0, seconds) * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


# ----------------------------------------------------------------------------- ffmpeg fallback

@dataclass(frozen=True)
class YuvFrame:
    """A decoded picture as FFmpeg's planar YUV 4:2:0 (half the bytes of RGB, so cheaper to
    pipe and to pass to face workers); converted to RGB where it is analysed."""

    planes: np.ndarray   # [height * 3 / 2, width] uint8

    def rgb(self) -> np.ndarray:
        import cv2
        return cv2.cvtColor(self.planes, cv2.COLOR_YUV2RGB_I420)


@dataclass(frozen=True)
class ScanFrame:
    """One frame of a scan: small (every frame) and, every few frames, large."""

    index: int
    small: np.ndarray              # at the scan's small size and pixel format
    large: YuvFrame | None = None  # at the large size on every ``large_every``-th frame


def _widen_pipe(fd: int) -> None:
    """Raise a pipe's buffer from 64 KiB towards 1 MiB: fewer wake-ups per frame."""
    try:
        import fcntl
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (OSError, ImportError):
        pass


class _FfmpegSource:
    """Frames through an ffmpeg pipe, decoded forward from the start.

    Serves every sequential pass, and random access for files decord cannot seek in
    exactly: it reads forward and restarts only when asked to go back. A scan can take a
    second, larger picture of every n-th frame from the same decoding, through a second
    pipe that a thread drains (so neither pipe can stall ffmpeg).
    """

    def __init__(self, film: Film, size: tuple[int, int], pix_fmt: str = "rgb24",
                 large_size: tuple[int, int] | None = None, large_every: int = 0):
        self.film, self.size, self.pix_fmt = film, size, pix_fmt
        self.large_size, self.large_every = (large_size, large_every) if large_size and large_every else (None, 0)
        self.proc = None
        self.next_index = 0
        self._large: queue.Queue | None = None

    def _start(self) -> None:
        import ffmpeg

        self.close()
        video = ffmpeg.input(media_url(self.film.path)).video
        out_args = {"format": "rawvideo", "fps_mode": "passthrough"}
        pass_fds: tuple[int, ...] = ()
        if self.large_size is None:
            small = video
            outputs = [small.filter("scale", *self.size, flags="area").filter("setsar", 1)
                       .output("pipe:", pix_fmt=self.pix_fmt, **out_args)]
        else:
            split = video.split()
            small, large = split[0], split[1]
            read_fd, write_fd = os.pipe()
            pass_fds = (write_fd,)
            outputs = [small.filter("scale", *self.size, flags="area").filter("setsar", 1)
                       .output("pipe:", pix_fmt=self.pix_fmt, **out_args),
                       large.filter("select", f"not(mod(n,{self.large_every}))")
                       .filter("scale", *self.large_size, flags="area").filter("setsar", 1)
                       .output(f"pipe:{write_fd}", pix_fmt="yuv420p", **out_args)]
        args = ffmpeg.merge_outputs(*outputs).global_args("-nostdin", "-v", "error").compile()
        # stderr goes to a file: a pipe nobody reads could fill up and stall ffmpeg.
        self.errors = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.errors,
                                     pass_fds=pass_fds)
        _widen_pipe(self.proc.stdout.fileno())
        if pass_fds:
            _widen_pipe(read_fd)
            os.close(write_fd)
            self._large = queue.Queue()
            threading.Thread(target=self._drain_large, args=(os.fdopen(read_fd, "rb"),), daemon=True).start()
        self.next_index = 0

    def _drain_large(self, pipe) -> None:
        w, h = self.large_size
        nbytes = w * h * 3 // 2
        with pipe:
            while True:
                buf = pipe.read(nbytes)
                if len(buf) < nbytes:
                    self._large.put(None)
                    return
                self._large.put(YuvFrame(np.frombuffer(buf, np.uint8).reshape(h * 3 // 2, w)))

    def _next(self) -> bytes:
        nbytes = self.size[0] * self.size[1] * 3
        buf = self.proc.stdout.read(nbytes)
        if len(buf) < nbytes:
            raise self._truncated()
        self.next_index += 1
        return buf

    def _array(self, buf: bytes) -> np.ndarray:
        return np.frombuffer(buf, np.uint8).reshape(self.size[1], self.size[0], 3)

    def frames(self) -> Iterator[ScanFrame]:
        """Small frames are read here; large ones arrive through the drain thread, maybe a
        little later, so small frames wait in ``pending`` (never blocking on a large frame
        while ffmpeg may be waiting for its small output to be read)."""
        self._start()
        pending: collections.deque[tuple[int, np.ndarray]] = collections.deque()
        large: dict[int, YuvFrame] = {}
        large_next = 0
        count = self.film.frame_count
        while self.next_index < count or pending:
            if self.next_index < count:
                index = self.next_index
                pending.append((index, self._array(self._next())))
            while pending:
                index, small = pending[0]
                if self.large_every and index % self.large_every == 0:
                    # Wait only when ffmpeg has surely produced it: the small stream is ahead or done.
                    block = len(pending) > 2 * self.large_every + 8 or self.next_index >= count
                    while large_next <= index:
                        try:
                            picture = self._large.get(block=block)
                        except queue.Empty:
                            break
                        if picture is None:
                            raise self._truncated()
                        if large_next == index:
                            large[index] = picture
                        large_next += self.large_every
                    if index not in large:
                        break
                pending.popleft()
                yield ScanFrame(index, small, large.pop(index, None))

    def read_sorted(self, order: list[int]) -> list[np.ndarray]:
        if self.proc is None or order[0] < self.next_index:
            self._start()
        wanted, out = set(order), []
        while self.next_index <= order[-1]:
            index = self.next_index
            buf = self._next()
            if index in wanted:
                out.append(self._array(buf).copy())
        return out

    def _truncated(self) -> MovieIdError:
        index = self.next_index
        try:
            code = self.proc.wait(timeout=2)       # its output ended: it is exiting, or hangs
        except subprocess.TimeoutExpired:
            code = None
        self.proc.kill()
        self.proc.wait()
        self.errors.seek(0)
        errors = self.errors.read().decode(errors="replace")
        err = _last_line(errors)
        self.close()
        stop_if_signalled(code, errors, self.film.path)
        when = format_time(self.film.time(min(index, self.film.frame_count - 1)))
        return MovieIdError(f"video data is corrupt or truncated: decoding stopped at frame {index} ({when})"
                            + (f": {err}" if err else ""), self.film.path)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc.stdout.close()
            self.errors.close()
            self.proc = None
