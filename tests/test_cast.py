"""Cast folders: layouts, manifests, bad photos, strictness and the embedding cache."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from movieid.cast import discover, load_cast
from movieid.errors import MovieIdError
from movieid.faces.dlib_backend import DlibBackend

from .conftest import pair_photo


@pytest.fixture(scope="module")
def backend():
    return DlibBackend()


def _photo(cast_dir, name):
    return next(p for p in sorted((cast_dir / name).iterdir()) if p.is_file())


def test_folder_per_person(package_cast, backend, tmp_path):
    cast = load_cast(package_cast, backend, cache_dir=tmp_path)
    assert cast.names == ["Chandler", "Eileen Collins", "Joey", "Phoebe", "Rachel", "Ross"]
    for member in cast.members:
        assert len(member.photos) == 1
        emb = member.photos[0].embedding
        assert emb.shape == (128,) and np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
        assert member.photos[0].box.size > 80


def test_loose_photos_are_named_after_the_file(package_cast, tmp_path):
    root = tmp_path / "cast"
    root.mkdir()
    shutil.copy(_photo(package_cast, "Eileen Collins"), root / "Eileen_Collins.jpg")
    (root / "notes.txt").write_text("not a photo: ignored")
    entries = discover(root)
    assert [(e.name, len(e.images)) for e in entries] == [("Eileen Collins", 1)]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_manifest_gives_names_aliases_and_photos(package_cast, backend, tmp_path, fmt):
    root = tmp_path / "cast"
    root.mkdir()
    members = [{"name": "Jon Snow", "aliases": ["Kit"], "images": [str(_photo(package_cast, "Ross"))]},
               {"name": "Ygritte", "images": [str(_photo(package_cast, "Rachel"))]}]
    if fmt == "yaml":
        import yaml
        (root / "cast.yaml").write_text(yaml.safe_dump({"members": members}))
    else:
        (root / "cast.json").write_text(json.dumps(members))
    cast = load_cast(root, backend, cache_dir=tmp_path / "cache")
    assert cast.names == ["Jon Snow", "Ygritte"]
    assert cast.member("Jon Snow").aliases == ("Kit",)


def test_invalid_manifest_names_the_problem(tmp_path):
    root = tmp_path / "cast"
    root.mkdir()
    (root / "cast.yaml").write_text("members:\n  - aliases: [x]\n")
    with pytest.raises(MovieIdError) as err:
        discover(root)
    assert "cast.yaml" in str(err.value) and "'name' is a required property" in str(err.value)


def test_empty_and_missing_cast_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MovieIdError, match="cast folder has no people"):
        discover(tmp_path / "empty")
    with pytest.raises(MovieIdError, match="no such cast folder"):
        discover(tmp_path / "nope")


def test_a_file_that_is_not_an_image(backend, tmp_path):
    person = tmp_path / "cast" / "Somebody"
    person.mkdir(parents=True)
    (person / "photo.jpg").write_text("this is not a JPEG")
    with pytest.raises(MovieIdError) as err:
        load_cast(tmp_path / "cast", backend, cache_dir=tmp_path / "cache")
    assert "photo.jpg" in str(err.value) and "not an image" in str(err.value)


@pytest.mark.parametrize("probe, problem", [("@pair", "2 faces found"), ("@blank", "no face found")])
def test_photos_without_exactly_one_face(package_photos, backend, tmp_path, probe, problem):
    person = tmp_path / "cast" / "Somebody"
    person.mkdir(parents=True)
    if probe == "@blank":
        from PIL import Image
        Image.new("RGB", (300, 300), (90, 120, 150)).save(person / "photo.jpg")
    else:
        pair_photo(package_photos, person / "photo.jpg")
    with pytest.raises(MovieIdError) as err:
        load_cast(tmp_path / "cast", backend, cache_dir=tmp_path / "cache")
    assert problem in str(err.value) and "photo.jpg" in str(err.value)


def test_not_strict_skips_bad_photos_with_a_warning(package_cast, package_photos, backend, tmp_path, caplog):
    root = tmp_path / "cast"
    (root / "Rachel").mkdir(parents=True)
    (root / "Two People").mkdir()
    shutil.copy(_photo(package_cast, "Rachel"), root / "Rachel" / "a.jpg")
    pair_photo(package_photos, root / "Two People" / "b.jpg")
    cast = load_cast(root, backend, strict=False, cache_dir=tmp_path / "cache")
    assert cast.names == ["Rachel"]
    assert "b.jpg" in caplog.text and "Two People" in caplog.text


def test_one_picture_under_two_names_is_refused(package_cast, backend, tmp_path, caplog):
    """Each would be the other's runner-up at no margin: neither could ever be named."""
    from PIL import Image

    root = tmp_path / "cast"
    for name in ("Rachel", "Ross", "Joey"):
        (root / name).mkdir(parents=True)
        shutil.copy(_photo(package_cast, name), root / name / "a.jpg")
    with Image.open(_photo(package_cast, "Rachel")) as im:     # a resized, re-encoded copy
        im.convert("RGB").resize((im.width * 3 // 4, im.height * 3 // 4)).save(root / "Joey" / "b.jpg", quality=80)
    with pytest.raises(MovieIdError) as err:
        load_cast(root, backend, cache_dir=tmp_path / "cache")
    assert str(err.value).endswith("Rachel/a.jpg: the same face as Joey's photo b.jpg (one picture under two names: "
                                   "neither can be named)")
    assert load_cast(root, backend, strict=False, cache_dir=tmp_path / "cache").names == ["Joey", "Rachel", "Ross"]
    assert "Rachel/a.jpg: the same face as Joey's" in caplog.text


def test_embeddings_are_cached_by_content(package_cast, backend, tmp_path, monkeypatch):
    cast_dir = package_cast
    first = load_cast(cast_dir, backend, cache_dir=tmp_path)
    assert len(list((tmp_path / "faces").rglob("*.npz"))) == 6

    def no_detection(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(backend, "detect", no_detection)
    second = load_cast(cast_dir, backend, cache_dir=tmp_path)
    for a, b in zip(first.members, second.members):
        assert np.allclose(a.embeddings, b.embeddings, atol=1e-6)
