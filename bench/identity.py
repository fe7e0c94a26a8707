"""Identity accuracy of the faces stage on films of real photos, per set, and the confidence sweep
that chooses ``--min-confidence``.

    python bench/identity.py                 # builds the films once into bench/out/identity/

Sets (films made by ``movieid.filmmaker`` with pans, zooms, tints, mirroring and grain):
``faces``: the cast of ../shared/fixtures/faces (one photo each) on their other photos, one to
three people per shot, with the openface photos as strangers; ``openface``: that set's two
cast members, with strangers from both sets; ``lookalike``: a stranger who scores 0.91 against
a member's photo, with and without that member in the film; ``sample``: the package-photo
sample film (also without a cast: people counted, labels checked per frame); ``turned`` and
``covered``: the faces cast on rotated, foreshortened (turned), mirrored and partly covered
variants of their photos (``bench/hard_faces.py``), with strangers' variants; ``dark``: the same
in a dusk and a night grade; ``lookalike in the dark``: the look-alike stranger in a night grade
against the look-alike cast; and recall against
the number of reference photos per person (1-3, where the photos exist). Then a detector study
on the hard variants: what each detector that ships in a PyPI wheel finds, and its cost per
1280x720 frame.

Per set: recall (cast appearances named right), wrong names (a name on a face that is not
that person, strangers included) and stranger rejection (stranger appearances left Unknown),
at the default ``--min-confidence``; then the sweep of those figures over min-confidence.
Truth is per shot, left to right (``None``: a stranger); a shot whose track count differs from
the truth is scored by names alone (a name not on screen is wrong) and counted as "unaligned".
"""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from movieid.annotation import document  # noqa: E402
from movieid.config import Config, FaceConfig, IdentityConfig, ShotConfig  # noqa: E402
from movieid.filmmaker import FilmSpec, ShotSpec, make_film  # noqa: E402
from movieid.pipeline import annotate  # noqa: E402
from sample_videos.build_sample import build_cast, film_spec, package_photo  # noqa: E402
from bench import hard_faces  # noqa: E402

SHARED = (REPO / ".." / "shared" / "fixtures").resolve()
FACES, OPENFACE = SHARED / "faces", SHARED / "faces-openface"
COOPER = (100 / 293, 40 / 473, 193 / 293, 109 / 473)
LONGORIA = (0.0, 110 / 473, 193 / 293, 109 / 473)
# The sample film's first shot zooms in on the card table: Phoebe is at its right edge with at
# most 40 % of her face in frame, in the first frames only. Not a frontal appearance: her name
# there is neither counted as a find nor as wrong.
SAMPLE_EDGE = {0: "Phoebe"}
HARD_SETS = ("turned", "covered", "dark")
SWEEP = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)


@dataclass(frozen=True)
class Shot:
    image: Path
    truth: tuple[str | None, ...]      # people left to right; None: a stranger
    motion: str = "static"
    crop: tuple | None = None
    mirror: bool = False
    tint: float = 0.0
    grain: int = 0
    frames: int = 40


def faces_set() -> list[Shot]:
    p, s = FACES / "probes", OPENFACE / "probes"
    O, B, K, R = "Barack Obama", "Joe Biden", "Kit Harington", "Rose Leslie"
    return [
        Shot(p / "obama1.jpg", (O,), "zoom_in"), Shot(p / "obama2.jpg", (O,), "pan_left", (0.0, 0.22, 1.0, 0.293), tint=0.5),
        Shot(p / "obama3.jpg", (O,), "static", (0.0, 0.08, 1.0, 0.35), mirror=True, grain=10),
        Shot(p / "biden2.jpg", (B,), "pan_right", (0.0, 0.125, 1.0, 0.5625), tint=-0.4),
        Shot(p / "john2.jpeg", (K,), "zoom_out"), Shot(p / "johnsnow_test1.jpg", (K,), "pan_left", (0.0, 0.08, 1.0, 0.375)),
        Shot(p / "rose2.jpg", (R,), "zoom_out", (0.0, 0.15, 1.0, 0.37), mirror=True),
        Shot(p / "two_people.jpg", (O, B), "pan_right"), Shot(p / "two_people.jpg", (B, O), "static", mirror=True, tint=0.4),
        Shot(p / "kit_with_rose.jpg", (R, K), "static", (0.0, 0.05, 1.0, 0.40), tint=0.4),
        Shot(p / "obama_and_biden.jpg", (B, O, None), "static", (0.25, 0.273, 0.75, 0.591)),
        Shot(s / "adams.jpg", (None,), "zoom_in", (0.0, 0.15, 1.0, 0.59)),
        Shot(s / "carell.jpg", (None,), "static", (0.0, 0.2, 1.0, 0.38)),
        Shot(s / "lennon-2.jpg", (None,), "pan_left", (0.0, 0.2, 1.0, 0.5625)),
        Shot(s / "clapton-2.jpg", (None,), "static", (0.0, 0.05, 1.0, 0.5625)),
        Shot(s / "longoria-cooper.jpg", (None,), "static", COOPER, tint=0.3),
        Shot(s / "longoria-cooper.jpg", (None,), "zoom_in", LONGORIA),
    ]


def openface_set() -> list[Shot]:
    p, s = FACES / "probes", OPENFACE / "probes"
    L, C = "John Lennon", "Eric Clapton"
    return [
        Shot(s / "lennon-2.jpg", (L,), "zoom_in", (0.0, 0.2, 1.0, 0.5625)),
        Shot(s / "clapton-2.jpg", (C,), "pan_right", (0.0, 0.05, 1.0, 0.5625), tint=-0.4),
        Shot(s / "lennon-2.jpg", (L,), "static", (0.0, 0.2, 1.0, 0.5625), mirror=True, tint=0.5, grain=10),
        Shot(s / "longoria-cooper.jpg", (None,), "static", COOPER),
        Shot(s / "adams.jpg", (None,), "pan_left", (0.0, 0.15, 1.0, 0.59)),
        Shot(s / "carell.jpg", (None,), "static", (0.0, 0.2, 1.0, 0.38)),
        Shot(p / "biden2.jpg", (None,), "static", (0.0, 0.125, 1.0, 0.5625)),
        Shot(p / "two_people.jpg", (None, None), "pan_right"),
        Shot(p / "kit_with_rose.jpg", (None, None), "static", (0.0, 0.05, 1.0, 0.40)),
    ]


HARD_MEMBERS = (("obama1.jpg", "Barack Obama"), ("biden2.jpg", "Joe Biden"), ("john2.jpeg", "Kit Harington"),
                ("rose2.jpg", "Rose Leslie"))
HARD_STRANGERS = ("adams.jpg", "carell.jpg")
MOTIONS = ("static", "pan_left", "zoom_in", "pan_right", "zoom_out")


def hard_photos(out: Path, kinds: tuple[str, ...]) -> list[tuple[Path, str | None]]:
    """(variant photo, who) for every member and stranger photo in every kind."""
    photos = [(FACES / "probes" / f, name) for f, name in HARD_MEMBERS] + [(OPENFACE / "probes" / f, None)
                                                                          for f in HARD_STRANGERS]
    made = []
    for photo, name in photos:
        for kind in kinds:
            path = out / "hard" / f"{photo.stem}-{kind.replace(' ', '_')}.png"
            made.append((path if path.exists() else hard_faces.make(photo, kind, path), name))
    return made


def hard_set(out: Path, kinds: tuple[str, ...], extra: tuple[Shot, ...] = ()) -> list[Shot]:
    """A shot of every variant (members photo by photo, then strangers), camera moves, mirroring
    and tints taking turns."""
    return [Shot(photo, (name,), MOTIONS[i % len(MOTIONS)], mirror=i % 3 == 1, tint=0.3 * ((i % 3) - 1))
            for i, (photo, name) in enumerate(hard_photos(out, kinds))] + list(extra)


def lookalike_set(with_member: bool) -> list[Shot]:
    s, c = OPENFACE / "probes", OPENFACE / "cast"
    shots = [Shot(c / "John Lennon" / "lennon-1.jpg", ("John Lennon",), "zoom_in", (0.0, 0.12, 1.0, 0.75))] if with_member else []
    return shots + [
        Shot(s / "longoria-cooper.jpg", (None,), "static", COOPER),
        Shot(s / "clapton-2.jpg", ("Eric Clapton",), "zoom_out", (0.0, 0.05, 1.0, 0.5625)),
        Shot(s / "longoria-cooper.jpg", (None,), "pan_left", COOPER, tint=0.3),
        Shot(s / "longoria-cooper.jpg", (None,), "zoom_in", COOPER, tint=-0.3, grain=8),
    ]


def references_set() -> list[Shot]:
    """Obama and Kit Harington on photos not used as references (they have 3 and 2 in all)."""
    p, s = FACES / "probes", OPENFACE / "probes"
    O, B, K, R = "Barack Obama", "Joe Biden", "Kit Harington", "Rose Leslie"
    return [
        Shot(p / "obama1.jpg", (O,), "zoom_in", tint=-0.4), Shot(p / "two_people.jpg", (O, B), "pan_right"),
        Shot(p / "obama_and_biden.jpg", (B, O, None), "static", (0.25, 0.273, 0.75, 0.591)),
        Shot(p / "johnsnow_test1.jpg", (K,), "pan_left", (0.0, 0.08, 1.0, 0.375)),
        Shot(p / "kit_with_rose.jpg", (R, K), "static", (0.0, 0.05, 1.0, 0.40), tint=0.4),
        Shot(s / "carell.jpg", (None,), "static", (0.0, 0.2, 1.0, 0.38)),
        Shot(s / "lennon-2.jpg", (None,), "pan_left", (0.0, 0.2, 1.0, 0.5625)),
    ]


def references_cast(out: Path, photos: int) -> Path:
    """The faces cast with up to ``photos`` reference photos for Obama (3) and Kit Harington (2)."""
    cast, p = FACES / "cast", FACES / "probes"
    refs = {"Barack Obama": [cast / "Barack Obama" / "obama.jpg", p / "obama2.jpg", p / "obama3.jpg"],
            "Kit Harington": [cast / "Kit Harington" / "john1.jpeg", p / "john2.jpeg"],
            "Joe Biden": [cast / "Joe Biden" / "biden.jpg"], "Rose Leslie": [cast / "Rose Leslie" / "img1.jpg"]}
    return link_cast(out / f"cast_{photos}_photos", {name: paths[:photos] for name, paths in refs.items()})


def bench_references(out: Path, config: Config) -> None:
    shots = references_set()
    film = film_of(shots, out / "references.mp4")
    truth = [s.truth for s in shots]
    print("\nRecall against reference photos per person (Obama up to 3, Kit Harington up to 2)\n")
    print(f"{'photos':>6} {'recall':>7} {'wrong':>6} {'rejected':>9} {'Obama conf.':>11} {'Kit conf.':>9}")
    for photos in (1, 2, 3):
        doc = document(annotate(film, references_cast(out, photos), config))
        n = score(doc, truth, IdentityConfig.min_confidence)
        conf = {p["name"]: p["confidence"] for shot in doc["shots"] for p in shot["people"] if p["in_cast"]}
        print(f"{photos:6d} {n['named'] / n['cast']:7.1%} {n['wrong']:6d} {n['rejected'] / n['strangers']:9.1%} "
              f"{conf.get('Barack Obama', 0):11.2f} {conf.get('Kit Harington', 0):9.2f}")


def link_cast(root: Path, photos: dict[str, list[Path]]) -> Path:
    if root.exists():
        shutil.rmtree(root)
    for name, paths in photos.items():
        (root / name).mkdir(parents=True)
        for photo in paths:
            (root / name / photo.name).symlink_to(photo)
    return root


def film_of(shots: list[Shot], path: Path) -> Path:
    if not path.exists():
        make_film(FilmSpec([ShotSpec(s.image, s.frames, s.motion, crop=s.crop, mirror=s.mirror, tint=s.tint,
                                     grain=s.grain) for s in shots], width=640, height=360, fps=25), path)
    return path


def score(doc: dict, truth: list[tuple], min_confidence: float, optional: dict[int, str] | None = None) -> dict:
    """Counts of one annotated film against its truth, naming at ``min_confidence``;
    ``optional``: per shot, a person not in its truth who may be named there (barely in frame)."""
    n = dict(cast=0, named=0, wrong=0, strangers=0, rejected=0, unaligned=0)
    for index, (shot, people) in enumerate(zip(doc["shots"], truth)):
        maybe = {(optional or {}).get(index)} - {None}
        x = {}
        for face in shot["faces"]:
            x.setdefault(face["person"], []).append((face["box"][0] + face["box"][2]) / 2)
        found = sorted(shot["people"], key=lambda p: sum(x[p["person"]]) / len(x[p["person"]]))
        names = [p["name"] if p["in_cast"] and p["confidence"] >= min_confidence else None for p in found]
        n["cast"] += sum(1 for t in people if t)
        n["strangers"] += sum(1 for t in people if t is None)
        if len(found) == len(people):
            n["named"] += sum(1 for t, name in zip(people, names) if t and name == t)
            n["wrong"] += sum(1 for t, name in zip(people, names) if name and name != t)
            n["rejected"] += sum(1 for t, name in zip(people, names) if t is None and name is None)
        else:
            n["unaligned"] += 1
            on_screen = {t for t in people if t}
            n["named"] += len(on_screen & {m for m in names if m})
            n["wrong"] += sum(1 for m in names if m and m not in on_screen | maybe)
            n["rejected"] += max(0, sum(1 for t in people if t is None)
                                 - sum(1 for m in names if m and m not in on_screen | maybe))
    return n


def frame_label_clashes(doc: dict) -> int:
    """Frames where one label is on two faces."""
    clashes = 0
    for shot in doc["shots"]:
        by_frame: dict[int, list[str]] = {}
        for face in shot["faces"]:
            by_frame.setdefault(face["frame"], []).append(face["name"])
        clashes += sum(len(set(v)) != len(v) for v in by_frame.values())
    return clashes


NO_FACES = ("brick.png", "chelsea.png", "coffee.png", "coins.png", "grass.png", "gravel.png", "horse.png",
            "hubble_deep_field.jpg", "ihc.png", "moon.png", "page.png", "rocket.jpg", "text.png",
            "motorcycle_left.png", "retina.jpg", "clock_motion.png", "color.png", "logo.png")


def detector_study(out: Path, skip_dlib_cnn: bool = True) -> None:
    """Each shipped detector on the hard variants (as 640x360 frames): faces found, faces the
    ResNet then names right (best member at the match threshold with a 0.015 margin over the
    runner-up, the default confidence), strangers it would name, faces it finds on 18 photos
    without faces (scikit-image's); and its cost on a 1280x720 frame (t1.jpg, the fastest run)."""
    import time

    import cv2
    import dlib
    import face_recognition_models
    import numpy as np
    from movieid.cast import load_cast
    from movieid.faces.base import Detection
    from movieid.faces.dlib_backend import DlibBackend
    from movieid.records import Box

    backend, upsampled = DlibBackend(upsample=0), DlibBackend(upsample=1)
    cast = load_cast(FACES / "cast", backend, cache_dir=out / "cache")
    cnn = dlib.cnn_face_detection_model_v1(face_recognition_models.cnn_face_detector_model_location())

    def mmod(rgb):
        h, w = rgb.shape[:2]
        return [Detection(Box(d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1).clipped(w, h),
                          d.confidence) for d in cnn(rgb, 0)]

    detectors = {   # name: (what it finds, what it costs on a frame: the second look on one without faces)
        "HOG (the default's first look)": (backend.detect, backend.detect),
        "HOG, upsampled once": (upsampled.detect, upsampled.detect),
        "HOG + second look (frame turned -30, +30 deg)": (
            lambda rgb: backend.detect(rgb) or backend.detect_tilted(rgb),
            lambda rgb: (backend.detect(rgb), backend.detect_tilted(rgb))),
        "CNN (MMOD, dlib-bin)": (mmod, mmod),
        "CNN (MMOD on onnxruntime, frame doubled)": (backend.detect_more, backend.detect_more),
        "HOG, then the CNN where HOG finds nobody": (
            lambda rgb: backend.detect(rgb) or backend.detect_more(rgb),
            lambda rgb: (backend.detect(rgb), backend.detect_more(rgb))),
    }
    if skip_dlib_cnn:   # 5-9 s a frame; its detections are the ONNX model's (tests/faces/test_dlib_cnn.py)
        del detectors["CNN (MMOD, dlib-bin)"]
    t1 = np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(package_photo("insightface", "data", "images", "t1.jpg"))),
                                           cv2.COLOR_BGR2RGB)[:720])
    skimage_data = package_photo("skimage", "data", "rocket.jpg").parent
    empties = []
    for name in NO_FACES:
        im = Image.open(skimage_data / name).convert("RGB")
        empties.append(np.asarray(im.resize((640, round(640 * im.height / im.width)))))
    groups = {"turned": hard_photos(out, hard_faces.TURNED), "covered": hard_photos(out, hard_faces.COVERED)}
    print("\nDetector study: hard variants as 640x360 frames (cast members: found / named right of 16; "
          "strangers: found / named of 8; faces found on 18 photos without faces)\n")
    print(f"{'detector':46} {'ms @720p':>9} {'turned':>7} {'covered':>8} {'strangers':>10} {'no-face':>8}")
    for name, (detect, cost_of) in detectors.items():
        times = []          # the fastest of a few runs: the machine may be shared
        for _ in range(2 if "CNN" in name else 5):
            start = time.perf_counter()
            cost_of(t1)
            times.append(time.perf_counter() - start)
        cost = min(times) * 1000
        cells, strangers = [], [0, 0]
        for group in groups.values():
            found = named = 0
            for photo, who in group:
                frame = np.asarray(Image.open(photo).convert("RGB").resize((640, 360)))
                hits = [d for d in detect(frame) if d.box.size >= 40]
                claims = []
                for sims in (cast.similarities(e) for e in backend.embed(frame, hits)):
                    order = np.argsort(-sims)
                    if sims[order[0]] >= backend.match_threshold and sims[order[0]] - sims[order[1]] >= 0.015:
                        claims.append(cast.names[order[0]])
                if who is None:
                    strangers[0] += bool(hits)
                    strangers[1] += bool(claims)
                else:
                    found += bool(hits)
                    named += who in claims and all(c == who for c in claims)
            cells.append(f"{found}/{named}")
        false = sum(len([d for d in detect(im) if d.box.size >= 40]) for im in empties)
        print(f"{name:46} {cost:9.0f} {cells[0]:>7} {cells[1]:>8} {strangers[0]:>5}/{strangers[1]:<4} {false:>8}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "out" / "identity")
    parser.add_argument("--only-references", action="store_true", help="only the reference-photo sweep")
    parser.add_argument("--only-detectors", action="store_true", help="only the detector study")
    parser.add_argument("--dlib-cnn", action="store_true", help="also dlib-bin's own CNN in the study (slow)")
    args = parser.parse_args(argv)
    if not (FACES / "labels.json").is_file() or not (OPENFACE / "labels.json").is_file():
        sys.exit(f"bench/identity.py: the real face photos are not at {SHARED}")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    config = Config(shots=ShotConfig(max_shot_len=0.0), faces=FaceConfig(backend="dlib"),
                    identity=IdentityConfig(min_confidence=0.0), workers=1, cache_dir=str(out / "cache"))
    if args.only_references:
        return bench_references(out, config)
    if args.only_detectors:
        return detector_study(out, not args.dlib_cnn)

    t1 = package_photo("insightface", "data", "images", "t1.jpg")
    astronaut = package_photo("skimage", "data", "astronaut.png")
    package_cast = out / "package_cast"
    if not package_cast.exists():
        build_cast(t1, astronaut, package_cast)
    L, C = "John Lennon", "Eric Clapton"
    lookalike_cast = link_cast(out / "lookalike_cast", {L: [OPENFACE / "probes" / "lennon-2.jpg"],
                                                        C: [OPENFACE / "cast" / C / "clapton-1.jpg"]})
    sets = []   # (name, film, cast folder, truth per shot)
    for name, shots, cast in (("faces", faces_set(), FACES / "cast"), ("openface", openface_set(), OPENFACE / "cast"),
                              ("lookalike, member in film", lookalike_set(True), lookalike_cast),
                              ("lookalike, member absent", lookalike_set(False), lookalike_cast)):
        sets.append((name, film_of(shots, out / f"{name.split(',')[0]}{'' if 'absent' not in name else '_absent'}.mp4"),
                     cast, [s.truth for s in shots]))
    partial = Shot(FACES / "probes" / "obama_partial_face.jpg", ("Barack Obama",), "static", (0.0, 0.0, 1.0, 0.24))
    for name, shots in (("turned", hard_set(out, hard_faces.TURNED)),
                        ("covered", hard_set(out, hard_faces.COVERED, (partial,))),
                        ("dark", hard_set(out, hard_faces.DARK))):
        sets.append((name, film_of(shots, out / f"{name}.mp4"), FACES / "cast", [s.truth for s in shots]))
    night_cooper = hard_faces.make(OPENFACE / "probes" / "longoria-cooper.jpg", "night", out / "hard" / "cooper-night.png")
    s = OPENFACE / "probes"   # bright strangers between the night shots: a cut between two dark shots can go unseen
    night = [Shot(night_cooper, (None,)), Shot(s / "adams.jpg", (None,), "zoom_in", (0.0, 0.15, 1.0, 0.59)),
             Shot(night_cooper, (None,), "zoom_in"), Shot(s / "carell.jpg", (None,), "static", (0.0, 0.2, 1.0, 0.38)),
             Shot(night_cooper, (None,), "pan_left")]
    sets.append(("lookalike in the dark", film_of(night, out / "lookalike_dark.mp4"), lookalike_cast,
                 [s.truth for s in night]))
    sample = out / "sample.mp4"
    if not sample.exists():
        make_film(film_spec(t1, astronaut, package_photo("skimage", "data", "rocket.jpg"),
                            package_photo("skimage", "data", "coffee.png")), sample)
    monica = "Monica"
    sample_truth = [tuple(None if p == monica else p for p in shot.people if (i, p) not in SAMPLE_EDGE.items())
                    for i, shot in enumerate(film_spec(t1, astronaut, t1, t1).shots)]
    sets.append(("sample", sample, package_cast, sample_truth))
    optional = {"sample": SAMPLE_EDGE}

    docs = {}
    for name, film, cast, truth in sets:
        docs[name] = document(annotate(film, cast, config))
        if len(docs[name]["shots"]) != len(truth):
            sys.exit(f"bench/identity.py: {film}: {len(docs[name]['shots'])} shots found, {len(truth)} made")
    no_cast = document(annotate(sample, None, config))

    default = IdentityConfig.min_confidence
    print(f"\nIdentity, dlib backend, --min-confidence {default} (bench/identity.py)\n")
    print(f"{'set':28} {'cast app.':>9} {'recall':>7} {'wrong':>6} {'strangers':>9} {'rejected':>9} {'unaligned':>9} {'clashes':>7}")
    for name, _, _, truth in sets:
        n = score(docs[name], truth, default, optional.get(name))
        print(f"{name:28} {n['cast']:9d} {n['named'] / max(1, n['cast']):7.1%} {n['wrong']:6d} {n['strangers']:9d} "
              f"{n['rejected'] / max(1, n['strangers']):9.1%} {n['unaligned']:9d} {frame_label_clashes(docs[name]):7d}")
    for name in HARD_SETS:
        kinds = {"turned": hard_faces.TURNED, "covered": hard_faces.COVERED, "dark": hard_faces.DARK}[name]
        shots = docs[name]["shots"][:len(HARD_MEMBERS) * len(kinds)]       # the members' shots, photo by photo
        named = [sum(shots[m * len(kinds) + k]["names"] == [HARD_MEMBERS[m][1]] for m in range(len(HARD_MEMBERS)))
                 for k in range(len(kinds))]
        print(f"{'  ' + name + ', named per kind':28} " + ", ".join(f"{kind} {n}/{len(HARD_MEMBERS)}"
                                                               for kind, n in zip(kinds, named)))
    labels = {n for s in no_cast["shots"] for n in s["names"]}
    print(f"{'sample without a cast':28} people 7, labels {len(labels)}, unknown_count {no_cast['unknown_count']}, "
          f"frames with a label on two faces: {frame_label_clashes(no_cast)}")

    for title, group in (("frontal and mildly turned sets", [x for x in sets if x[0] not in HARD_SETS]),
                         ("turned, covered and dark sets", [x for x in sets if x[0] in HARD_SETS])):
        print(f"\nSweep over --min-confidence ({title} together)\n")
        print(f"{'min-confidence':>14} {'recall':>7} {'wrong':>6} {'rejected':>9}")
        for t in SWEEP:
            total = dict(cast=0, named=0, wrong=0, strangers=0, rejected=0)
            for name, _, _, truth in group:
                for k, v in score(docs[name], truth, t, optional.get(name)).items():
                    if k in total:
                        total[k] += v
            print(f"{t:14.1f} {total['named'] / total['cast']:7.1%} {total['wrong']:6d} "
                  f"{total['rejected'] / total['strangers']:9.1%}")
    print("\nConfidence of each cast-named person (true / not on screen):")
    for name, _, _, truth in sets:
        rows = []
        for shot, people in zip(docs[name]["shots"], truth):
            for p in shot["people"]:
                if p["in_cast"]:
                    rows.append(f"{p['name'].split()[-1]}{'' if p['name'] in people else '(WRONG)'}:{p['confidence']:.2f}")
        print(f"  {name}: {' '.join(sorted(set(rows)))}")
    bench_references(out, config)
    detector_study(out, not args.dlib_cnn)


if __name__ == "__main__":
    main()
