"""The review page in a real browser (Debian's headless Chromium through Selenium), and
``movieid report`` re-rendering a JSON a person edited."""
from __future__ import annotations

import json
import os
import re
import shutil
import time

import pytest

from movieid.annotation import validate

from .conftest import run_cli
from .helpers import browser


def env_with_cache(tmp_path):
    return {**os.environ, "MOVIEID_CACHE_DIR": str(tmp_path / "cache")}


@pytest.fixture(scope="module")
def page(sample, tmp_path_factory):
    """The sample film annotated with --format html (and json, csv, otio) in a folder with the film."""
    film, cast, _ = sample
    folder = tmp_path_factory.mktemp("review")
    shutil.copy(film, folder / "sample.mp4")
    proc = run_cli("annotate", folder / "sample.mp4", "--cast", cast, "--face-backend", "dlib", "-q",
                   *[a for f in ("json", "html", "csv", "otio") for a in ("--format", f)],
                   env=env_with_cache(folder))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["sample.csv", "sample.html", "sample.json",
                                                                       "sample.mp4", "sample.otio"]
    return folder / "sample.html", json.loads((folder / "sample.json").read_text())


@pytest.fixture(scope="module")
def chromium():
    reason = browser.missing()
    if reason:
        pytest.skip(reason)
    with browser.chromium() as driver:
        yield driver


def visible_shots(driver) -> list[int]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('article.shot')).filter(e => !e.hidden && e.offsetParent)"
        ".map(e => Number(e.dataset.index))")


def test_the_page_is_self_contained(page):
    html, _ = page
    text = html.read_text()
    urls = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert urls and all(u.startswith(("data:", "#")) or u == "sample.mp4" for u in urls), \
        [u[:40] for u in urls if not u.startswith(("data:", "#"))]
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text


def test_the_page_shows_every_shot_and_filters_by_name(page, chromium, tmp_path):
    from selenium.webdriver.common.by import By

    html, doc = page
    driver = chromium
    driver.get(html.as_uri())
    assert browser.console_errors(driver) == []
    shots = driver.find_elements(By.CSS_SELECTOR, "article.shot")
    assert [int(s.get_attribute("data-index")) for s in shots] == [s["index"] for s in doc["shots"]]
    for element, shot in zip(shots, doc["shots"]):
        assert element.find_element(By.CSS_SELECTOR, ".caption").text == shot["caption"]
        assert len(element.find_elements(By.CSS_SELECTOR, "figure svg image")) == len(shot["keyframes"])
        # The page shows the keyframes and their faces (a shot's faces may come from more frames).
        shown = [f for f in shot["faces"] if f["frame"] in {k["frame"] for k in shot["keyframes"]}]
        assert len(element.find_elements(By.CSS_SELECTOR, "g.face rect")) == len(shown)
        labels = [t.get_attribute("textContent") for t in element.find_elements(By.CSS_SELECTOR, "g.face text")]
        assert [label.rsplit(" ", 1)[0] for label in labels] == [f["name"] for f in shown]
        ids = [w["name"] for w in shot["window"] if w["role"] == "id"]
        assert [li.text.removeprefix("ID ") for li in element.find_elements(By.CSS_SELECTOR, ".window li.id")] == ids
    rows = [r.get_attribute("data-name") for r in driver.find_elements(By.CSS_SELECTOR, ".timeline .row")]
    unknowns = sorted({n for s in doc["shots"] for n in s["names"] if n.startswith("Unknown")})
    assert rows == [m["name"].lower() for m in doc["cast"]["members"]] + [u.lower() for u in unknowns]

    box = driver.find_element(By.ID, "filter")
    box.send_keys("ross")
    assert visible_shots(driver) == [s["index"] for s in doc["shots"] if "Ross" in s["names"]]
    assert "of %d shots" % len(doc["shots"]) in driver.find_element(By.ID, "count").text
    box.clear()
    box.send_keys("nobody-has-this-name")
    assert visible_shots(driver) == []
    driver.execute_script("var f = document.getElementById('filter'); f.value = '';"
                          "f.dispatchEvent(new Event('input'));")
    assert len(visible_shots(driver)) == len(doc["shots"])

    png = driver.get_screenshot_as_png()
    (tmp_path / "review.png").write_bytes(png)
    assert not browser.screenshot_is_blank(png)
    assert browser.console_errors(driver) == []


def test_a_bar_jumps_to_its_shot_and_the_video_seeks_there(page, chromium):
    from selenium.webdriver.common.by import By

    html, doc = page
    driver = chromium
    driver.get(html.as_uri())
    state = driver.execute_script("var v = document.querySelector('video'); return [v.textTracks.length,"
                                  "v.textTracks[0].kind, v.textTracks[0].mode]")
    assert state == [1, "captions", "showing"]
    deadline = time.monotonic() + 20
    while driver.execute_script("return document.querySelector('video').readyState") < 1:
        assert time.monotonic() < deadline, "the film did not load in the page"
        time.sleep(0.1)
    cues = driver.execute_script("return document.querySelector('video').textTracks[0].cues.length")
    assert cues >= len(doc["shots"])
    target = doc["shots"][-2]
    bar = driver.find_elements(By.CSS_SELECTOR, f".timeline .bar[data-shot='{target['index']}']")[0]
    bar.click()
    assert driver.execute_script("return location.hash") == f"#shot-{target['index']}"
    assert "current" in driver.find_element(By.ID, f"shot-{target['index']}").get_attribute("class")
    assert driver.execute_script("return document.querySelector('video').currentTime") == \
        pytest.approx(target["start"], abs=0.05)
    assert browser.console_errors(driver) == []


def test_report_renders_an_edited_json(page, chromium, tmp_path):
    from selenium.webdriver.common.by import By

    html, doc = page
    edited = json.loads(json.dumps(doc))
    edited["shots"][1]["caption"] = "Rachel deals the cards & smiles <warmly>."
    source = tmp_path / "edited.json"
    source.write_text(json.dumps(edited))
    out = tmp_path / "pages" / "edited.html"
    proc = run_cli("report", source, "--film", html.parent / "sample.mp4", "-o", out, "-q")
    assert proc.returncode == 0, proc.stderr
    driver = chromium
    driver.get(out.as_uri())
    assert browser.console_errors(driver) == []
    assert driver.find_element(By.CSS_SELECTOR, "#shot-1 .caption").text == edited["shots"][1]["caption"]
    src = driver.find_element(By.CSS_SELECTOR, "video").get_attribute("src")
    assert src.endswith("/sample.mp4") and "../" not in src          # resolved from a relative path
    proc = run_cli("report", source, "--film", html.parent / "sample.mp4", "-o", out, "-q")
    assert proc.returncode == 1 and "--overwrite" in proc.stderr and len(proc.stderr.splitlines()) == 1


def test_report_without_the_film_still_works(page, chromium, tmp_path):
    _, doc = page
    moved = json.loads(json.dumps(doc))
    moved["film"]["path"] = str(tmp_path / "elsewhere" / "sample.mp4")
    source = tmp_path / "moved.json"
    source.write_text(json.dumps(moved))
    proc = run_cli("report", source, "-q")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "moved.html").read_text()
    assert "no thumbnails" in text and "<video" not in text
    chromium.get((tmp_path / "moved.html").as_uri())
    assert browser.console_errors(chromium) == []


@pytest.mark.parametrize("problem, content, message", [
    ("not json", "{not json", "is not valid JSON (line 1"),
    ("schema", None, "does not follow the annotation schema at shots/0: 'caption' is a required property"),
])
def test_report_refuses_bad_json_in_one_line(page, tmp_path, problem, content, message):
    _, doc = page
    if content is None:
        broken = json.loads(json.dumps(doc))
        del broken["shots"][0]["caption"]
        content = json.dumps(broken)
    source = tmp_path / "bad.json"
    source.write_text(content)
    proc = run_cli("report", source)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and str(source) in proc.stderr
    assert not (tmp_path / "bad.html").exists()


def test_report_usage_errors(page, tmp_path):
    html, _ = page
    source = html.with_suffix(".json")
    proc = run_cli("report", source, "-o", tmp_path / "page.txt")
    assert proc.returncode == 2 and "must be a .html file" in proc.stderr
    proc = run_cli("report", source, "--film", tmp_path / "missing.mp4", "-o", tmp_path / "x.html")
    assert proc.returncode == 1 and "missing.mp4" in proc.stderr and not (tmp_path / "x.html").exists()


def test_the_page_shows_the_audio_description(speech_film, sample, chromium, tmp_path):
    pytest.importorskip("silero_vad")
    from selenium.webdriver.common.by import By

    film, _ = speech_film
    _, cast, _ = sample
    proc = run_cli("annotate", film, "--cast", cast, "-o", tmp_path, "--ad", "--format", "json", "--format", "html",
                   "--face-backend", "dlib", "-q", env=env_with_cache(tmp_path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "speech.json").read_text())
    validate(doc)
    chromium.get((tmp_path / "speech.html").as_uri())
    assert browser.console_errors(chromium) == []
    kinds = chromium.execute_script("return Array.from(document.querySelector('video').textTracks).map(t => t.kind)")
    assert kinds == ["captions", "descriptions"]
    lines = chromium.find_elements(By.CSS_SELECTOR, "p.ad")
    assert [p.get_attribute("class").split()[-1] for p in lines] == ["ad-" + s["description"]["status"]
                                                                    for s in doc["shots"]]
