"""MM-ID: metrics on hand-made answers with known scores, scoring the shared benchmark JSON's real
items, a judge behind a local OpenAI-compatible HTTP server, and answering with a tiny model
(resumable, bad images recorded, never fatal)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from movieid.evaluation import answer_benchmark, load_benchmark, model_answerer, read_predictions, score
from movieid.evaluation.judge import Judge, parse_score
from movieid.evaluation.mmid import chosen_image, iou, predicted_box, reference_box

from .conftest import REPO, run_cli

BENCHMARK = (REPO / ".." / "shared" / "fixtures" / "mmid" / "benchmark_mmid.json").resolve()
SIZE = (640, 360)  # the size the tests give every test image they write


@pytest.fixture(scope="module")
def benchmark():
    if not BENCHMARK.is_file():
        pytest.skip(f"{BENCHMARK} not found (the shared fixtures are not checked out here)")
    return load_benchmark(BENCHMARK)


def _write_images(root: Path, items, size=SIZE):
    rng = np.random.default_rng(0)
    for item in items:
        for relative in item.images:
            path = root / relative
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def _predictions(path: Path, answers: dict) -> Path:
    path.write_text("".join(json.dumps({"id": k, "answer": v}) + "\n" for k, v in answers.items()))
    return path


def _to_1000(box, size=SIZE):
    x1, y1, x2, y2 = box
    return f"<box>({round(x1 / size[0] * 1000)},{round(y1 / size[1] * 1000)}),({round(x2 / size[0] * 1000)}," \
           f"{round(y2 / size[1] * 1000)})</box>"


# ---- metrics -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, choice", [
    ("Image 3", 3), ("The second image.", 2), ("It is the fourth one, not image 1", 4),
    ("Regina Lampert is in image 2.", 2), ("I cannot tell.", None), ("", None), ("10 people", 10)])
def test_the_first_digit_or_ordinal_picks_the_image(text, choice):
    assert chosen_image(text) == choice


def test_iou_of_known_boxes():
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    assert iou([10, 10, 0, 0], [0, 0, 5, 5]) == pytest.approx(0.25)  # corners in any order


def test_boxes_on_the_1000_scale_are_rescaled_to_the_image():
    answer = "<ref>Ben Milo</ref><box>(500,250),(750,1000)</box>"
    assert predicted_box(answer, "Ben Milo", 640, 360) == (320.0, 90.0, 480.0, 360.0)
    two = "<ref>Ann</ref><box>(0,0),(100,100)</box><ref>Ben</ref><box>(500,500),(1000,1000)</box>"
    assert predicted_box(two, "ben", 1000, 1000) == (500.0, 500.0, 1000.0, 1000.0)
    assert predicted_box("at [100, 200, 300, 400]", "x", 1000, 500) == (100.0, 100.0, 300.0, 200.0)
    assert predicted_box("nowhere", "x", 100, 100) is None
    assert reference_box("[383, 50, 555, 231]") == (383.0, 50.0, 555.0, 231.0) and reference_box("left") is None


def test_judge_replies_are_parsed():
    assert parse_score("8") == 8 and parse_score("Score: 10/10") == 10 and parse_score("none") is None


# ---- the real benchmark JSON ---------------------------------------------------------------

def test_the_released_json_loads_whole(benchmark):
    assert len(benchmark.items) == 585 and not benchmark.malformed
    counts = {t: sum(i.type == t for i in benchmark.items) for t in {i.type for i in benchmark.items}}
    assert counts == {"matching": 67, "location": 123, "QA_singleimage": 132, "QA_multiimage": 22,
                      "caption_singleimage": 104, "caption_multiimage": 137}
    first = benchmark.items[0]
    assert first.type == "location" and first.target == "Ben Milo" and first.answer == "[383, 50, 555, 231]"
    assert first.images[-1] == "./images/movie/12 Strong (2018)/shot_0135_img_0.jpg"


def test_scores_of_known_answers_on_the_real_items(benchmark, tmp_path):
    matching = [i for i in benchmark.items if i.type == "matching"]
    locations = [i for i in benchmark.items if i.type == "location"]
    _write_images(tmp_path, locations)
    answers = {}
    for k, item in enumerate(matching):  # every other one right: accuracy 34/67
        truth = chosen_image(item.answer)
        answers[item.id] = f"Image {truth}" if k % 2 == 0 else f"Image {truth % 4 + 1}"
    for k, item in enumerate(locations):
        x1, y1, x2, y2 = reference_box(item.answer)
        if k % 3 == 0:       # the reference box: IoU ~1
            answers[item.id] = f"<ref>{item.target}</ref>{_to_1000((x1, y1, x2, y2))}"
        elif k % 3 == 1:     # its right third: IoU 1/3
            answers[item.id] = f"<ref>{item.target}</ref>{_to_1000((x1 + 2 * (x2 - x1) / 3, y1, x2, y2))}"
        else:
            answers[item.id] = "I do not see them."
    report = score(benchmark, read_predictions(_predictions(tmp_path / "p.jsonl", answers)), tmp_path)
    m, loc = report.types["matching"].summary(), report.types["location"].summary()
    assert m["accuracy"] == pytest.approx(34 / 67) and m["missing"] == 0
    exact = len(locations[0::3])
    assert loc["accuracy_iou_0.5"] == pytest.approx(exact / 123) and loc["unparsed"] == len(locations[2::3])
    assert loc["mean_iou"] == pytest.approx((exact * 1.0 + len(locations[1::3]) / 3) / 123, abs=0.01)
    qa = report.types["QA_singleimage"].summary()
    assert qa["judged"] is None and qa["missing"] == 132
    assert "not judged" in report.table() and "accuracy 50.7 % (34/67)" in report.table()


def test_unknown_types_and_malformed_answers_are_counted(benchmark, tmp_path):
    raw = json.loads(BENCHMARK.read_text())[:3] + [
        {"id": 9001, "type": "counting", "question": "How many?", "answer": "2"},
        {"id": 9002, "type": "matching", "answer": "Image 1"}]  # no question
    (tmp_path / "b.json").write_text(json.dumps(raw))
    small = load_benchmark(tmp_path / "b.json")
    assert [i.id for i in small.items] == ["1", "2", "3", "9001"] and small.malformed == ["id 9002: no 'question'"]
    lines = [json.dumps({"id": 1, "answer": 42}), "{not json", json.dumps({"answer": "no id"}),
             json.dumps({"id": 9001, "answer": "two"}), json.dumps({"id": 777, "answer": "x"}),
             json.dumps({"id": 2, "answer": "standing"}), json.dumps({"id": 2, "answer": "again"})]
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n")
    report = score(small, read_predictions(tmp_path / "p.jsonl"), tmp_path)
    counts = report.to_json()["counts"]
    assert counts == {"items": 4, "malformed_items": 1, "malformed_prediction_lines": 3, "duplicate_predictions": 1,
                      "predictions_for_unknown_ids": 1, "unknown_type_items": 1, "judge_failures": 0}
    assert report.types["location"].summary()["missing"] == 1 and report.types["counting"].items == 1
    assert "unknown type, not scored" in report.table()


# ---- the judge -----------------------------------------------------------------------------

class _FakeJudge(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint: 7 for answers containing "standing", garbage for
    "nonsense", 3 otherwise. Records the requests."""

    requests: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, self.headers.get("Authorization"), body))
        prompt = body["messages"][-1]["content"]
        graded = prompt.split("Answer to grade:")[1]
        reply = "no idea" if "nonsense" in graded else "7" if "standing" in graded else "Score: 3"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_server():
    _FakeJudge.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_judge_scores_qa_and_captions_and_its_ratings_are_cached(benchmark, judge_server, tmp_path):
    qa = [i for i in benchmark.items if i.type == "QA_singleimage"][:3]
    captions = [i for i in benchmark.items if i.type == "caption_multiimage"][:2]
    answers = {qa[0].id: "He is standing.", qa[1].id: "nonsense", qa[2].id: "He runs.",
               captions[0].id: "Two people standing.", captions[1].id: "A room."}
    predictions = read_predictions(_predictions(tmp_path / "p.jsonl", answers))
    judge = Judge(judge_server, "grader", api_key="k", cache=tmp_path / "cache.jsonl")
    report = score(benchmark, predictions, tmp_path, judge, judge.info, judge_workers=2)
    single, multi = report.types["QA_singleimage"], report.types["caption_multiimage"]
    assert sorted(single.judge_scores) == [3, 7] and single.unscored == 1 and single.missing == 129
    assert single.summary()["mean_judge_score"] == 5.0 and multi.summary()["mean_judge_score"] == 5.0
    assert report.to_json()["counts"]["judge_failures"] == 1 and "judge 5.00 / 10" in report.table()
    path, auth, body = _FakeJudge.requests[0]
    assert path == "/v1/chat/completions" and auth == "Bearer k" and body["model"] == "grader"
    assert body["temperature"] == 0 and "<img>" not in body["messages"][-1]["content"]
    asked = len(_FakeJudge.requests)
    again = score(benchmark, predictions, tmp_path, Judge(judge_server, "grader", cache=tmp_path / "cache.jsonl"))
    assert sorted(again.types["QA_singleimage"].judge_scores) == [3, 7]
    assert len(_FakeJudge.requests) == asked + 1  # only the unparsable reply is asked again


def test_an_unreachable_judge_is_one_error(benchmark, tmp_path):
    item = next(i for i in benchmark.items if i.type == "QA_multiimage")
    _predictions(tmp_path / "p.jsonl", {item.id: "x"})
    proc = run_cli("eval", "mmid", "--benchmark", BENCHMARK, "--images", tmp_path, "-o", tmp_path / "p.jsonl",
                   "--judge-url", "http://127.0.0.1:9/v1", "--judge-model", "m")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "the judge failed 3 requests in a row" in lines[0]
    assert "cannot reach" in lines[0]


# ---- answering -----------------------------------------------------------------------------

def test_answering_with_a_tiny_model_resumes_and_records_bad_images(benchmark, tmp_path):
    from movieid.models.ida_vlm import IdaVlm
    from movieid.models.images import load_rgb as to_rgb_array
    from tests.helpers.training_data import build_small_checkpoint

    picked = [next(i for i in benchmark.items if i.type == t) for t in
              ("matching", "location", "QA_singleimage", "caption_multiimage")]
    raw = {str(r["id"]): r for r in json.loads(BENCHMARK.read_text())}
    (tmp_path / "b.json").write_text(json.dumps([raw[i.id] for i in picked]))
    bench = load_benchmark(tmp_path / "b.json")
    _write_images(tmp_path, bench.items[:3])  # the caption item's images are missing
    model = IdaVlm.from_pretrained(build_small_checkpoint(tmp_path / "model"), device="cpu")
    calls = []

    def answer(pairs):
        calls.append([item.id for item, _ in pairs])
        return model_answerer(model, max_new_tokens=4)(pairs)

    predictions = tmp_path / "preds.jsonl"
    predictions.write_text(json.dumps({"id": picked[0].id, "type": "matching", "answer": "kept"}) + "\n{\"id\": 3")
    assert answer_benchmark(answer, bench, tmp_path, predictions, 8, to_rgb_array, progress=False) == (2, 1)
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [line["id"] for line in lines] == [i.id for i in picked]  # the half line is gone
    assert lines[0]["answer"] == "kept" and calls == [[picked[1].id, picked[2].id]]
    assert lines[3]["answer"] is None and "no such file" in lines[3]["error"]
    assert all(isinstance(line["answer"], str) for line in lines[1:3])
    calls.clear()  # again: the kept answers stay, the failed item is tried again (it fails again)
    assert answer_benchmark(answer, bench, tmp_path, predictions, 8, to_rgb_array, progress=False) == (0, 1)
    assert calls == [] and len(predictions.read_text().splitlines()) == 4
    report = score(bench, read_predictions(predictions), tmp_path)
    assert report.types["caption_multiimage"].missing == 1 and report.types["matching"].answered == 1


@pytest.mark.parametrize("url", ["file:///etc/passwd", "not a url", "ftp://host/v1", "http://"])
def test_the_judge_url_must_be_http(benchmark, tmp_path, url):
    item = next(i for i in benchmark.items if i.type == "QA_multiimage")
    _predictions(tmp_path / "p.jsonl", {item.id: "x"})
    proc = run_cli("eval", "mmid", "--benchmark", BENCHMARK, "--images", tmp_path, "-o", tmp_path / "p.jsonl",
                   "--judge-url", url, "--judge-model", "m")
    assert proc.returncode == 2 and "--judge-url" in proc.stderr and "http:// or https://" in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_judge_that_never_answers_is_given_up_after_a_few_requests(benchmark, tmp_path):
    """A server that accepts connections and never replies (and a closed port) stops the scoring
    after three failed requests in a row, in seconds, not after every item's timeouts."""
    import socket
    import time

    items = [i for i in benchmark.items if i.type in ("QA_singleimage", "caption_multiimage")][:12]
    _predictions(tmp_path / "p.jsonl", {i.id: "He is standing." for i in items})
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)                              # connections complete; nothing is ever read
        for url in (f"http://127.0.0.1:{silent.getsockname()[1]}/v1", "http://127.0.0.1:9/v1"):
            start = time.monotonic()
            proc = run_cli("eval", "mmid", "--benchmark", BENCHMARK, "--images", tmp_path, "-o", tmp_path / "p.jsonl",
                           "--judge-url", url, "--judge-model", "m", "--judge-timeout", "0.5", "--judge-workers", "2")
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 1 and len(lines) == 1 and "failed 3 requests in a row" in lines[0], proc.stderr
            assert time.monotonic() - start < 30
