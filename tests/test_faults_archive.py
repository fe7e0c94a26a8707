"""Issue 25, an archive you can search: the index a batch keeps (OUT/index.sqlite), movieid index
and movieid search, people across films, the overview page, Parquet, and bad input.

The archive: three short films of the card players (insightface's t1.jpg) with a cast that
lacks Joey and Monica, so both are strangers, each recurring in two films. Truth is the films'
own specs (who is on screen in each shot, and when)."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from movieid.batch import BatchOptions, run_batch
from movieid.config import Config, FaceConfig, OutputConfig
from movieid.filmmaker import FilmSpec, ShotSpec, make_film
from sample_videos.build_sample import build_cast, crop

from .conftest import REPO, run_cli

FPS = 25


def _shot(photo, who):
    boxes = {"Rachel": (0, 250, 270, 152), "Ross+Chandler": (400, 250, 500, 281), "Monica": (220, 167, 200, 112),
             "Joey": (820, 74, 240, 135)}
    return ShotSpec(photo, 40, "pan_right" if "+" in who else "static", tuple(who.split("+")), crop=crop(*boxes[who]))


FILMS = {"s1/ep1.mp4": ["Rachel", "Ross+Chandler", "Joey"],
         "s1/ep2.mp4": ["Monica", "Joey", "Ross+Chandler"],
         "s2/ep1.mp4": ["Ross+Chandler", "Monica", "Rachel"]}
STRANGERS = ("Monica", "Joey")


def truth() -> list[tuple[str, float, float, tuple[str, ...]]]:
    """(film, start, end, people) of every shot, from the specs."""
    rows = []
    for key, shots in FILMS.items():
        for n, who in enumerate(shots):
            rows.append((key, n * 40 / FPS, (n + 1) * 40 / FPS, tuple(who.split("+"))))
    return rows


def batch_config(tmp: Path) -> Config:
    return Config(faces=FaceConfig(backend="dlib"), workers=1, cache_dir=str(tmp / "cache"),
                  outputs=OutputConfig(formats=("srt", "vtt", "json", "html")))


@pytest.fixture(scope="module")
def shelf(package_photos, tmp_path_factory):
    """(source folder, cast without the strangers) of the three films."""
    root = tmp_path_factory.mktemp("shelf")
    for key, shots in FILMS.items():
        make_film(FilmSpec([_shot(package_photos["t1"], who) for who in shots], width=640, height=360, fps=FPS),
                  root / "src" / key)
    build_cast(package_photos["t1"], package_photos["astronaut"], root / "cast")
    for name in STRANGERS:
        shutil.rmtree(root / "cast" / name, ignore_errors=True)
    return root / "src", root / "cast"


@pytest.fixture(scope="module")
def batch_out(shelf, tmp_path_factory):
    """The batch's output folder, with the index the batch kept."""
    src, cast = shelf
    out = tmp_path_factory.mktemp("out")
    summary = run_batch(src, out, cast, BatchOptions(config=batch_config(out)))
    assert summary.ok and summary.done == 3
    return out


def search(out, *args):
    return run_cli("search", str(out), *args)


def hits_of(result) -> list[dict]:
    """The hits of ``search --json``: exit 0 with hits, 1 (as grep) without."""
    hits = json.loads(result.stdout)
    assert result.returncode == (0 if hits else 1), result.stderr
    return hits


def test_search_for_two_people_returns_exactly_the_shots_where_both_are_on_screen(batch_out):
    assert (batch_out / "index.sqlite").is_file()
    hits = hits_of(search(batch_out, "--person", "Ross", "--person", "chandler", "--json"))
    expected = [(f, s, e) for f, s, e, who in truth() if {"Ross", "Chandler"} <= set(who)]
    assert [h["film"] for h in hits] == [f for f, _, _ in expected]
    for hit, (_, start, end) in zip(hits, expected):       # cuts are found to the frame
        assert (hit["start"], hit["end"]) == (pytest.approx(start, abs=1 / FPS), pytest.approx(end, abs=1 / FPS))
    assert all(h["names"] == ["Ross", "Chandler"] for h in hits)
    # one person: every shot of theirs; times are the films' own, as the sidecars have them
    rachel = hits_of(search(batch_out, "--person", "Rachel", "--json"))
    assert [h["film"] for h in rachel] == [f for f, _, _, who in truth() if "Rachel" in who]
    for h in rachel:
        doc = json.loads((batch_out / h["film"]).with_suffix(".json").read_text())
        assert any(s["start"] == h["start"] and s["end"] == h["end"] and s["caption"] == h["caption"]
                   for s in doc["shots"])
    # Rachel with Ross: never together, so nothing, exit 1 as grep; a name nobody has: the same
    none = search(batch_out, "--person", "Rachel", "--person", "Ross")
    assert none.returncode == 1 and none.stdout == "" and none.stderr == ""
    assert search(batch_out, "--person", "Gunther").returncode == 1


def test_a_recurring_stranger_gets_one_archive_label_across_films(batch_out):
    labels = {}
    for film, start, _, who in truth():
        if who[0] in STRANGERS:
            [hit] = [h for h in hits_of(search(batch_out, "--film", film, "--json"))
                     if h["start"] == pytest.approx(start, abs=1 / FPS)]
            [label] = hit["names"]
            assert label.startswith("Archive unknown "), hit
            labels.setdefault(who[0], set()).add(label)
    assert {k: len(v) for k, v in labels.items()} == {"Monica": 1, "Joey": 1}     # one label each
    assert labels["Monica"] != labels["Joey"]                                    # never two people made one
    [monica] = labels["Monica"]
    found = hits_of(search(batch_out, "--person", monica, "--json"))
    assert sorted(h["film"] for h in found) == sorted(f for f, _, _, who in truth() if who == ("Monica",))


def test_text_film_and_csv(batch_out):
    result = search(batch_out, "--text", "UNKNOWN person", "--film", "s1/*", "--csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["film"], float(r["start"])) for r in rows] == \
        [(f, s) for f, s, _, who in truth() if who[0] in STRANGERS and f.startswith("s1/")]
    assert all("unknown person" in r["caption"].lower() for r in rows)
    # FTS5 syntax in the words is taken as words: no error, no match
    odd = search(batch_out, "--text", 'kitchen" OR "Ross')
    assert odd.returncode == 1 and odd.stderr == ""
    # the plain listing: film, time range, names, caption
    plain = search(batch_out, "--person", "Rachel", "--film", "s2/*")
    assert plain.returncode == 0 and plain.stdout == "s2/ep1.mp4  00:00:03.200 --> 00:00:04.800  Rachel  Rachel\n"


def test_index_rebuilds_the_same_index_and_keeps_the_archive_people(batch_out, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(batch_out, out)
    before = [hits_of(search(out, "--json"))]
    result = run_cli("index", str(out), "-q")
    assert result.returncode == 0, result.stderr
    assert [hits_of(search(out, "--json"))] == before
    # a folder of annotate outputs gathered in one place (no journal): indexed by their sidecars
    gathered = tmp_path / "gathered"
    gathered.mkdir()
    for json_file in batch_out.rglob("*.json"):
        shutil.copy(json_file, gathered / f"{json_file.parent.name}-{json_file.name}")
    assert run_cli("index", str(gathered), "-q").returncode == 0
    films = {h["film"] for h in hits_of(search(gathered, "--person", "Ross", "--json"))}
    assert films == {"s1-ep1.mp4", "s1-ep2.mp4", "s2-ep1.mp4"}


class _Tables(HTMLParser):
    """Rows of the tables of a page, by table id, as cell texts."""

    def __init__(self):
        super().__init__()
        self.tables, self.links, self._table, self._row, self._cell = {}, [], None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""
        elif tag == "a":
            self.links.append(attrs["href"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_the_overview_page_lists_films_and_people_with_their_films(batch_out):
    page = _Tables()
    page.feed((batch_out / "index.html").read_text())
    films = page.tables["films"][1:]
    assert [row[0] for row in films] == list(FILMS)
    assert all(row[1] == "00:00:04.800" and row[2] == "3" for row in films)
    people = {row[0].split(" not in a cast")[0].strip(): row for row in page.tables["people"][1:]}
    assert people["Rachel"][3] == "s1/ep1.mp4 (00:00:01.600), s2/ep1.mp4 (00:00:01.600)"
    strangers = [row for name, row in people.items() if name.startswith("Archive unknown")]
    assert len(strangers) == 2 and all(row[3].count(".mp4") == 2 for row in strangers)
    for link in page.links:                                     # each film's review page
        assert (batch_out / link).is_file() and link.endswith(".html")
    assert len(page.links) >= 3


def test_the_hits_page_has_thumbnails_and_links_to_the_shot_on_the_review_page(batch_out, tmp_path):
    page_path = tmp_path / "pages" / "ross.html"
    page_path.parent.mkdir()
    result = search(batch_out, "--person", "Ross", "--html", str(page_path))
    assert result.returncode == 0, result.stderr
    html = page_path.read_text()
    assert html.count('<img src="data:image/jpeg;base64,') == 3
    links = _Tables()
    links.feed(html)
    shot_links = [link for link in links.links if "#shot-" in link]
    assert len(shot_links) == 3
    for link in shot_links:
        target, anchor = link.split("#")
        review = (page_path.parent / target).resolve()
        assert review.is_file() and f'id="{anchor}"' in review.read_text()


def test_parquet_holds_the_same_tables(batch_out, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is the parquet extra")
    out = tmp_path / "copy"
    shutil.copytree(batch_out, out)
    result = run_cli("index", str(out), "--parquet", str(tmp_path / "pq"), "-q")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(out / "index.sqlite") as db:
        for table in ("films", "shots", "persons"):
            count = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            assert pq.read_table(tmp_path / "pq" / f"{table}.parquet").num_rows == count
    shots = pq.read_table(tmp_path / "pq" / "shots.parquet").to_pylist()
    assert sorted((s["start"], s["caption"]) for s in shots) == \
        sorted((s["start"], s["caption"]) for f in FILMS
               for s in json.loads((out / f).with_suffix(".json").read_text())["shots"])
    persons = pq.read_table(tmp_path / "pq" / "persons.parquet").to_pylist()
    assert all(len(p["embedding"]) == 128 for p in persons if not p["in_cast"])


# ----------------------------------------------------------------------------- kills and bad input

KILL_AFTER_INDEXING = """
import os, signal, sys
from movieid.batch import journal
finish, key = journal.Journal.finish, sys.argv[1]
def finish_or_die(self, job, *args, **kw):
    if job.key == key:
        os.kill(os.getpid(), signal.SIGKILL)     # the film is in the index, not yet done in the journal
    return finish(self, job, *args, **kw)
journal.Journal.finish = finish_or_die
from movieid.cli.main import main
sys.argv = ["movieid", *sys.argv[2:]]
main()
"""


def test_a_batch_killed_between_index_and_journal_leaves_an_index_that_matches_the_journal(shelf, tmp_path):
    src, cast = shelf
    out = tmp_path / "out"
    env = {**os.environ, "MOVIEID_CACHE_DIR": str(tmp_path / "cache")}
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_INDEXING, "s1/ep2.mp4", "batch", str(src), "-o", str(out),
                             "--cast", str(cast), "--face-backend", "dlib", "--workers", "1", "-q"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL
    with sqlite3.connect(out / ".movieid-batch.sqlite") as db:
        done = {k for (k,) in db.execute("SELECT key FROM films WHERE state='done'")}
    with sqlite3.connect(out / "index.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        indexed = {k for (k,) in db.execute("SELECT key FROM films")}
    assert "s1/ep2.mp4" not in done and indexed == done | {"s1/ep2.mp4"}   # the kill's moment
    # as read, the index holds exactly the films the journal records done
    assert {h["film"] for h in hits_of(search(out, "--json"))} == done
    assert run_cli("index", str(out), "-q").returncode == 0
    assert {h["film"] for h in hits_of(search(out, "--json"))} == done
    # the next batch finishes the rest; the index holds every film, each once
    assert run_batch(src, out, cast, BatchOptions(config=Config(faces=FaceConfig(backend="dlib"), workers=1,
                                                                cache_dir=str(tmp_path / "cache")))).ok
    with sqlite3.connect(out / "index.sqlite") as db:
        assert sorted(k for (k,) in db.execute("SELECT key FROM films")) == sorted(FILMS)
    assert {h["film"] for h in hits_of(search(out, "--json"))} == set(FILMS)


def test_bad_input_is_one_line_and_nothing_is_lost(batch_out, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(batch_out, out, ignore=shutil.ignore_patterns(".movieid-batch.*"))   # a folder of sidecars
    (out / "notes.json").write_text('{"title": "my notes"}')
    (out / "broken.json").write_text("{not json")
    os.mkfifo(out / "pipe.json")                                    # never opened: it would block
    result = run_cli("index", str(out), "-q")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("movieid: warning: ") for line in lines), lines
    assert any("notes.json: is not a movieid annotation" in line for line in lines)
    assert any("broken.json: is not a movieid annotation" in line for line in lines)
    assert any("pipe.json: is a named pipe" in line for line in lines)
    assert {h["film"] for h in hits_of(search(out, "--json"))} == set(FILMS)    # the rest is indexed

    # an index of a newer schema: refused in one line by search, index and batch; left as it was
    with sqlite3.connect(out / "index.sqlite") as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    before = (out / "index.sqlite").read_bytes()
    for command in (["search", str(out), "--person", "Ross"], ["index", str(out)]):
        result = run_cli(*command)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and "schema 99, newer than this movieid's" in result.stderr, result.stderr
    assert (out / "index.sqlite").read_bytes() == before

    # not an index at all, a named pipe in its place, no index
    (out / "index.sqlite").write_text("hello")
    result = search(out, "--person", "Ross")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "not a movieid archive index" in result.stderr
    (out / "index.sqlite").unlink()
    os.mkfifo(out / "index.sqlite")
    result = search(out, "--person", "Ross")
    assert result.returncode == 1 and "index.sqlite: is a named pipe" in result.stderr
    result = search(tmp_path / "nothing", "--person", "Ross")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "no such folder" in result.stderr


def test_a_batch_does_not_touch_an_index_of_a_newer_schema(shelf, batch_out, tmp_path):
    src, cast = shelf
    out = tmp_path / "copy"
    shutil.copytree(batch_out, out)
    with sqlite3.connect(out / "index.sqlite") as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    before = (out / "index.sqlite").read_bytes()
    result = run_cli("batch", str(src), "-o", str(out), "--cast", str(cast), "--face-backend", "dlib", "-q",
                     env={**os.environ, "MOVIEID_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "index.sqlite: archive index has schema 99" in result.stderr
    assert (out / "index.sqlite").read_bytes() == before
