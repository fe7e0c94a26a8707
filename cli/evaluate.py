"""``movieid eval``: benchmarks (registered in ``cli/main.py``)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .common import FiniteFloat, common, echo, setup_logging

MMID_EPILOG = """\b
Examples:
  movieid eval mmid --benchmark MM-ID/benchmark_mmid.json --images MM-ID --model CKPT -o preds.jsonl
  movieid eval mmid --benchmark MM-ID/benchmark_mmid.json --images MM-ID -o preds.jsonl --json scores.json
  movieid eval mmid ... -o preds.jsonl --judge-url http://localhost:8000/v1 --judge-model NAME
\b
With --model every item not yet in the predictions file is answered (greedy; a re-run resumes),
then the answers are scored. matching: accuracy; location: mean IoU and accuracy at IoU > 0.5;
QA and caption types: a judge (any OpenAI-compatible endpoint, 1..10), else "not judged".
"""


@click.group("eval")
def evaluate():
    """Evaluate models on benchmarks."""


@evaluate.command("mmid", epilog=MMID_EPILOG)
@click.option("--benchmark", type=click.Path(path_type=Path), required=True, help="MM-ID JSON (benchmark_mmid.json).")
@click.option("--images", "images_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the benchmark's image paths (./images/...) are relative to (default: the JSON's).")
@click.option("-o", "--predictions", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Predictions, one JSON line per item: written with --model, read otherwise.")
@click.option("--model", default=None, help="Checkpoint to answer with (omit to score existing predictions).")
@click.option("--variant", type=click.Choice(["base", "idf"]), default="base", show_default=True)
@click.option("--device", default=None, help="torch device (default: cuda if available).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--judge-url", default=None, help="OpenAI-compatible endpoint (e.g. http://host:8000/v1).")
@click.option("--judge-model", default=None, help="Model name the judge endpoint serves.")
@click.option("--judge-api-key-env", default="OPENAI_API_KEY", show_default=True,
              help="Environment variable holding the judge's API key, if it needs one.")
@click.option("--judge-workers", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--judge-timeout", type=FiniteFloat(minimum=0, min_open=True), default=60.0, show_default=True,
              help="Seconds to wait for one judge reply (after 3 failed requests in a row the judge is given up).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the scores (per type and per item) here.")
@common
def mmid(benchmark, images_dir, predictions, model, variant, device, batch_size, max_new_tokens, judge_url,
         judge_model, judge_api_key_env, judge_workers, judge_timeout, json_path, verbose, quiet):
    """Answer and score the MM-ID benchmark."""
    setup_logging(verbose, quiet)
    from movieid.evaluation import answer_benchmark, load_benchmark, model_answerer, read_predictions, score
    from movieid.errors import InputError
    from movieid.evaluation.judge import Judge, http_url

    if bool(judge_url) != bool(judge_model):
        raise click.UsageError("--judge-url and --judge-model go together")
    if judge_url:
        try:
            http_url(judge_url)
        except InputError as error:
            raise click.BadParameter(error.problem, param_hint="--judge-url") from None
    bench = load_benchmark(benchmark)
    images_dir = images_dir or benchmark.parent
    progress = False if quiet else None
    if model:
        from movieid.models.ida_vlm import IdaVlm
        from movieid.models.images import load_rgb

        vlm = IdaVlm.from_pretrained(model, variant=variant, device=device)
        answered, failed = answer_benchmark(model_answerer(vlm, max_new_tokens), bench, images_dir, predictions,
                                            batch_size, load_rgb, progress)
        if not quiet:
            echo(f"answered {answered} items" + (f", {failed} failed (see 'error' in {predictions})"
                                                       if failed else "") + f" -> {predictions}", err=True)
    elif not predictions.is_file():
        raise click.UsageError(f"{predictions} does not exist (give --model to answer the benchmark)")
    judge = None
    if judge_url:
        judge = Judge(judge_url, judge_model, os.environ.get(judge_api_key_env),
                      cache=predictions.with_name(predictions.name + ".judge.jsonl"), timeout=judge_timeout)
    report = score(bench, read_predictions(predictions), images_dir, judge, judge.info if judge else None,
                   judge_workers, progress)
    echo(report.table())
    if json_path:
        json_path.write_text(json.dumps(report.to_json(), indent=2), encoding="utf-8")
