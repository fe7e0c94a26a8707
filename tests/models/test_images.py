"""The project's image loader (``movieid.models.images.load_rgb``) on real files made by PIL."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from PIL import Image

from movieid.models.errors import InputError
from movieid.models.images import ImageError, load_rgb


def _halves(height=20, width=40) -> np.ndarray:
    """Red left half, blue right half, a green top row: any turn or flip shows."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, : width // 2, 0] = 255
    image[:, width // 2:, 2] = 255
    image[0, :, 1] = 255
    return image


def _one_line_naming(error: pytest.ExceptionInfo, path) -> str:
    message = str(error.value)
    assert isinstance(error.value, ImageError) and isinstance(error.value, InputError)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


@pytest.mark.parametrize("orientation,turn", [(3, 2), (6, -1), (8, 1)])  # EXIF: 180, 90 clockwise, 90 anticlockwise
def test_exif_orientation_is_applied(tmp_path, orientation, turn):
    path = tmp_path / "portrait.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_halves()).save(path, quality=95, exif=exif)
    stored = np.asarray(Image.open(path).convert("RGB"))  # as the pixels lie in the file
    upright = np.rot90(stored, k=turn)
    assert np.array_equal(load_rgb(path), upright)
    assert np.array_equal(load_rgb(Image.open(path)), upright)
    assert load_rgb(path).shape == ((40, 20, 3) if orientation in (6, 8) else (20, 40, 3))


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    rgb = load_rgb(path)
    expected = np.rint(values / 257).astype(np.uint8)
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert all(np.array_equal(rgb[..., c], expected) for c in range(3))
    assert rgb.mean() == pytest.approx(127.5, abs=1)  # PIL's convert("RGB") would give ~255 almost everywhere


def test_sixteen_bit_and_float_arrays_and_images_are_scaled():
    rgb16 = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 1000).astype(np.uint16)
    assert np.array_equal(load_rgb(rgb16), np.rint(rgb16 / 257).astype(np.uint8))
    ramp = np.linspace(0, 1, 30, dtype=np.float32).reshape(5, 6)
    assert np.array_equal(load_rgb(Image.fromarray(ramp))[..., 1], np.rint(ramp * 255).astype(np.uint8))
    wide = Image.fromarray(np.array([[-5, 0], [5, 10]], dtype=np.int32))  # outside 16 bits: stretched
    assert load_rgb(wide)[..., 0].tolist() == [[0, 85], [170, 255]]


def test_alpha_palette_cmyk_and_grey(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half fully transparent
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba).save(path)
    rgb = load_rgb(path)
    assert rgb[0, 0].tolist() == [200, 0, 0] and rgb[3, 3].tolist() == [255, 255, 255]
    assert np.array_equal(load_rgb(rgba), rgb)
    palette = Image.fromarray(rgba).convert("RGB").quantize(4)
    palette.info["transparency"] = palette.getpixel((3, 3))
    path = tmp_path / "palette.png"
    palette.save(path, transparency=palette.info["transparency"])
    assert load_rgb(path)[3, 3].tolist() == [255, 255, 255]
    la = Image.fromarray(rgba[..., 0])
    la.putalpha(Image.fromarray(rgba[..., 3]))
    assert la.mode == "LA"
    assert load_rgb(la)[3, 3].tolist() == [255, 255, 255] and load_rgb(la)[0, 0].tolist() == [200] * 3
    cmyk = Image.fromarray(_halves()).convert("CMYK")
    path = tmp_path / "cmyk.jpg"
    cmyk.save(path, quality=100)
    assert np.array_equal(load_rgb(path), np.asarray(Image.open(path).convert("RGB")))
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(load_rgb(grey), np.repeat(grey[..., None], 3, axis=-1))


def test_a_named_pipe_is_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "frames.jpg"
    os.mkfifo(fifo)
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(pytest.raises(ImageError, load_rgb, fifo)), daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # it opened the pipe: release it before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("load_rgb opened a named pipe")
    assert "named pipe" in _one_line_naming(outcome[0], fifo)


def test_symlink_loop_missing_folder_empty_and_not_an_image(tmp_path):
    loop = tmp_path / "loop.jpg"
    os.symlink(tmp_path / "other.jpg", loop)
    os.symlink(loop, tmp_path / "other.jpg")
    cases = {loop: "symlink loop", tmp_path / "missing.jpg": "no such file", tmp_path: "a folder"}
    (tmp_path / "empty.jpg").write_bytes(b"")
    cases[tmp_path / "empty.jpg"] = "empty file"
    (tmp_path / "notes.jpg").write_text("not a picture")
    cases[tmp_path / "notes.jpg"] = "not an image"
    whole = tmp_path / "whole.jpg"
    Image.fromarray(_halves(200, 300)).save(whole)
    (tmp_path / "cut.jpg").write_bytes(whole.read_bytes()[:600])
    cases[tmp_path / "cut.jpg"] = "cannot read image"
    for path, problem in cases.items():
        with pytest.raises(ImageError) as error:
            load_rgb(path)
        assert problem in _one_line_naming(error, path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied(tmp_path):
    path = tmp_path / "locked.png"
    Image.fromarray(_halves()).save(path)
    path.chmod(0)
    try:
        with pytest.raises(ImageError) as error:
            load_rgb(path)
        assert "permission denied" in _one_line_naming(error, path)
    finally:
        path.chmod(0o600)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.fromarray(_halves(30, 40)).save(path)
    for limit in (1000, 500):  # above the limit: PIL warns; above twice the limit: PIL raises
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(ImageError) as error:
            load_rgb(path)
        assert "too large" in _one_line_naming(error, path)


def test_bad_arrays_and_types():
    with pytest.raises(ImageError, match=r"\[H, W\], \[H, W, 3\] or \[H, W, 4\], uint8 or uint16"):
        load_rgb(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ImageError, match="uint8 or uint16"):
        load_rgb(np.zeros((10, 10, 2), dtype=np.uint8))
    with pytest.raises(ImageError, match="unsupported image type bytes"):
        load_rgb(b"bytes")
    array = np.zeros((4, 5, 3), dtype=np.uint8)
    assert load_rgb(array) is array  # no copy of a frame that is already RGB
