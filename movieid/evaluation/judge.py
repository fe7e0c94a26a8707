"""A judge for MM-ID's QA and caption answers: a chat model behind an OpenAI-compatible endpoint
(``POST {url}/chat/completions``), asked over plain HTTP to rate an answer against the reference
from 1 to 10, as the authors rated with GPT-4 (the prompt is ours). Ratings are cached next to the
predictions, so scoring again asks only about answers it has not seen."""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..models.errors import InputError
from .mmid import Item, JudgeUnavailable

SYSTEM = "You grade answers about scenes from films. You are strict about who is who."
PROMPT = """A question was asked about one or more film images, in which people are introduced by \
name with reference pictures (you do not see the pictures).

Question: {question}

Reference answer (correct): {reference}

Answer to grade: {answer}

Rate how well the answer to grade agrees with the reference answer: are the people named \
correctly, and are what they do, where they are and what the scene shows right? Style and length \
do not matter; wrong names or invented actions do. Reply with a single integer from 1 (wrong or \
unrelated) to 10 (as correct and complete as the reference), and nothing else."""

_SCORE = re.compile(r"\b(10|[1-9])\b")
FAILURES_IN_A_ROW = 3   # failed requests in a row (unreachable, timed out) after which the judge is given up


def http_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host (a ``file://`` or bare word is refused: the
    judge posts answers to it, and urllib would read a local file for ``file://``)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InputError(f"the judge URL must be http:// or https:// with a host, e.g. http://localhost:8000/v1 "
                         f"(got {url!r})")
    return url.strip()
_IMAGE_TAG = re.compile(r"<img>.*?</img>", re.DOTALL)


def judge_question(item: Item) -> str:
    return " ".join(_IMAGE_TAG.sub("[image]", item.question).split())


def parse_score(reply: str) -> int | None:
    """The first integer 1..10 in the judge's reply."""
    match = _SCORE.search(reply)
    return int(match.group(1)) if match else None


class Judge:
    """``judge(item, answer)`` -> 1..10; ``InputError`` when the endpoint fails or its reply holds no score."""

    def __init__(self, url: str, model: str, api_key: str | None = None, cache: Path | None = None,
                 timeout: float = 60.0, retries: int = 2):
        url = http_url(url).rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model, self.api_key, self.timeout, self.retries = model, api_key, timeout, retries
        self.cache_path = cache
        self._cache = self._read_cache()
        self._lock = threading.Lock()
        self._failed_in_a_row = 0

    @property
    def info(self) -> dict:
        return {"url": self.url, "model": self.model}

    def __call__(self, item: Item, answer: str) -> int:
        key = self._key(item, answer)
        if key in self._cache:
            return self._cache[key]
        prompt = PROMPT.format(question=judge_question(item), reference=item.answer.strip(), answer=answer.strip())
        reply = self._ask(prompt)
        value = parse_score(reply)
        if value is None:
            raise InputError(f"the judge's reply holds no score 1..10: {reply.strip()[:80]!r}")
        self._remember(key, value)
        return value

    def _ask(self, prompt: str) -> str:
        body = json.dumps({"model": self.model, "temperature": 0, "max_tokens": 8,
                           "messages": [{"role": "system", "content": SYSTEM},
                                        {"role": "user", "content": prompt}]}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        problem = ""
        for attempt in range(self.retries + 1):
            self._check_available()
            if attempt:
                time.sleep(attempt)
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    reply = json.loads(response.read().decode("utf-8"))
                self._count(failed=False)
                return str(reply["choices"][0]["message"]["content"])
            except urllib.error.HTTPError as error:
                problem = f"HTTP {error.code} from {self.url}"
                if error.code < 500 and error.code != 429:
                    break  # a request the endpoint will never accept
                self._count(failed=True, problem=problem)
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
                problem = f"cannot reach {self.url} ({getattr(error, 'reason', error)})"
                self._count(failed=True, problem=problem)
            except (ValueError, KeyError, IndexError, TypeError):
                problem = f"{self.url} did not answer in the chat-completions format"
                break
        raise InputError(problem)

    def _count(self, failed: bool, problem: str = "") -> None:
        """Requests that failed in a row, across the judging threads: a server that never answers
        (or a closed port) stops the scoring after a few, not after every item's timeouts."""
        with self._lock:
            self._failed_in_a_row = self._failed_in_a_row + 1 if failed else 0
            if failed and not self._gave_up and self._failed_in_a_row >= FAILURES_IN_A_ROW:
                self._gave_up = f"the judge failed {self._failed_in_a_row} requests in a row (last: {problem})"
        self._check_available()

    _gave_up = ""

    def _check_available(self) -> None:
        if self._gave_up:
            raise JudgeUnavailable(self._gave_up)

    def _key(self, item: Item, answer: str) -> str:
        text = "\n".join((self.model, PROMPT, item.question, item.answer, answer))
        return hashlib.sha256(text.encode()).hexdigest()

    def _read_cache(self) -> dict[str, int]:
        cache = {}
        if self.cache_path and self.cache_path.is_file():
            for line in self.cache_path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                    cache[record["key"]] = int(record["score"])
                except (ValueError, KeyError, TypeError):
                    continue
        return cache

    def _remember(self, key: str, value: int) -> None:
        with self._lock:
            self._cache[key] = value
            if self.cache_path:
                with open(self.cache_path, "a", encoding="utf-8") as out:
                    out.write(json.dumps({"key": key, "score": value}) + "\n")
