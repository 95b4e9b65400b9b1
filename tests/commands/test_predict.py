"""`cnnkit predict`'s inputs: every Pillow mode converted to the model's channels, bad files refused."""
import struct
import zlib

import numpy as np
import pytest

from cnnkit.commands.predict import read_images

Image = pytest.importorskip("PIL.Image")
RGB, GREY = (3, 4, 5), (1, 4, 5)  # (C, H, W) of a model's input; images are 5 wide, 4 high


def solid(mode, value, size=(5, 4)):
    return Image.new(mode, size, value)


def palette_image():
    image = Image.new("P", (5, 4), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    return image


@pytest.mark.parametrize("image, rgb, grey", [
    (solid("L", 200), (200, 200, 200), 200),
    (solid("1", 1), (255, 255, 255), 255),
    (palette_image(), (10, 200, 30), 10 * 0.299 + 200 * 0.587 + 30 * 0.114),
    (solid("CMYK", (0, 255, 255, 0)), (255, 0, 0), 255 * 0.299),
    (solid("RGB", (10, 200, 30)), (10, 200, 30), 10 * 0.299 + 200 * 0.587 + 30 * 0.114),
    (solid("RGBA", (100, 150, 200, 128)), (50, 75, 100), (100 * 0.299 + 150 * 0.587 + 200 * 0.114) / 2),
    (solid("LA", (200, 64)), (50, 50, 50), 50),
    (solid("RGBA", (100, 150, 200, 0)), (0, 0, 0), 0),  # fully transparent: the black background
], ids=["L", "1", "P", "CMYK", "RGB", "RGBA", "LA", "transparent"])
def test_modes_become_the_models_channels(tmp_path, image, rgb, grey):
    image.save(tmp_path / "image.png" if image.mode != "CMYK" else tmp_path / "image.jpg", quality=100)
    path = next(tmp_path.iterdir())
    as_rgb, as_grey = read_images(path, RGB), read_images(path, GREY)
    assert as_rgb.shape == (1, *RGB) and as_grey.shape == (1, *GREY)
    assert as_rgb.dtype == as_grey.dtype == np.float32
    tolerance = 3 if image.mode == "CMYK" else 1.01  # JPEG; composite and luma round to whole levels
    np.testing.assert_allclose(as_rgb[0, :, 0, 0] * 255, rgb, atol=tolerance)
    np.testing.assert_allclose(as_grey[0, 0] * 255, np.full((4, 5), grey), atol=tolerance)


def test_palette_transparency_is_black(tmp_path):
    image = palette_image()
    image.info["transparency"] = 1
    image.save(tmp_path / "image.png", transparency=1)
    assert read_images(tmp_path / "image.png", RGB).max() == 0


def test_sixteen_bit_grey_keeps_its_range(tmp_path):
    levels = np.array([[0, 16384, 32768, 49152, 65535]] * 4, np.uint16)
    Image.fromarray(levels).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    images = read_images(tmp_path / "deep.png", RGB)
    np.testing.assert_allclose(images[0], np.broadcast_to(levels / 65535, RGB), atol=1e-6)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    solid("L", 9, size=(30, 30)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)  # 900 pixels: over the limit, under twice it
    with pytest.raises(ValueError, match=r"big\.png: refusing to decode .*900 pixels"):
        read_images(tmp_path / "big.png", RGB)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)  # over twice the limit: Pillow's own error
    with pytest.raises(ValueError, match=r"big\.png: refusing to decode"):
        read_images(tmp_path / "big.png", RGB)


def test_header_claiming_more_pixels_than_the_file_holds_is_refused(tmp_path):
    solid("L", 9).save(tmp_path / "small.png")
    raw = (tmp_path / "small.png").read_bytes()
    ihdr = b"IHDR" + struct.pack(">II", 5000, 5000) + raw[24:29]  # 25 M pixels, under Pillow's limit
    (tmp_path / "claims.png").write_bytes(raw[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + raw[33:])
    with pytest.raises(ValueError, match=r"claims.png: refusing to decode 5000 x 5000 pixels, more than a \d+-byte"):
        read_images(tmp_path / "claims.png", RGB)


@pytest.mark.parametrize("name", ["empty.png", "empty.npy"])
def test_empty_file_is_refused(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(ValueError, match=f"{name}: empty file"):
        read_images(tmp_path / name, RGB)


def test_damaged_image_is_refused(tmp_path):
    Image.fromarray(np.arange(60, dtype=np.uint8).reshape(4, 5, 3)).save(tmp_path / "cut.png")
    raw = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match=r"cut\.png: not an image file Pillow can read"):
        read_images(tmp_path / "cut.png", RGB)


@pytest.mark.parametrize("array, message", [
    (np.zeros((2, 8, 8), np.float32), r"expected an array of shape .* got \(2, 8, 8\)"),
    (np.zeros((0, *RGB), np.float32), r"expected an array of shape .* got \(0, 3, 4, 5\)"),
    (np.zeros(RGB, np.complex64), "expected uint8 or float pixels, got complex64"),
    (np.zeros(RGB, bool), "expected uint8 or float pixels, got bool"),
    (np.zeros(RGB, np.int16), "expected uint8 or float pixels, got int16"),
    (np.full(RGB, np.nan, np.float32), r"float pixels must be finite and in \[0, 1\]"),
    (np.full(RGB, np.inf), r"float pixels must be finite and in \[0, 1\]"),
    (np.full(RGB, 1.5, np.float32), r"float pixels must be finite and in \[0, 1\]"),
    (np.full(RGB, None, object), "not a .npy array file .*unsupported dtype object"),
], ids=["shape", "no images", "complex", "bool", "int16", "nan", "inf", "range", "object"])
def test_bad_npy_is_refused(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array, allow_pickle=True)
    with pytest.raises(ValueError, match=message):
        read_images(tmp_path / "bad.npy", RGB)


def test_npy_header_claiming_more_than_the_file_is_refused(tmp_path):
    np.save(tmp_path / "images.npy", np.zeros(RGB, np.float32))
    raw = (tmp_path / "images.npy").read_bytes().replace(b"(3, 4, 5)", b"(3000000, 4, 5)")
    (tmp_path / "images.npy").write_bytes(raw)
    with pytest.raises(ValueError, match=r"header gives float32 of shape \(3000000, 4, 5\), which does not fit"):
        read_images(tmp_path / "images.npy", RGB)


def test_npy_grey_and_batches(tmp_path):
    np.save(tmp_path / "one.npy", np.full((4, 5), 255, np.uint8))
    np.save(tmp_path / "batch.npy", np.full((2, *RGB), 0.5, np.float64))
    np.testing.assert_array_equal(read_images(tmp_path / "one.npy", GREY), np.ones((1, *GREY), np.float32))
    np.testing.assert_array_equal(read_images(tmp_path / "batch.npy", RGB), np.full((2, *RGB), 0.5, np.float32))
