"""The README's quick start is what CI runs: keep the two identical."""
from __future__ import annotations

import re

from .conftest import REPO


def quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, flags=re.S)


def test_quick_start_has_two_commands_and_ci_runs_the_test_one():
    commands = quick_start_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    install_and_run, install_and_test = commands
    assert "movieid annotate sample_videos/sample.mp4 --cast sample_videos/cast" in install_and_run
    assert install_and_test.endswith("python -m pytest")
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert install_and_test in ci


def _numbers(text: str) -> set[float]:
    return {float(n) for n in re.findall(r"(?<![\w.])\d+(?:\.\d+)?", text)}


def test_the_options_tables_defaults_are_those_of_help():
    """Every figure the README's table of annotate options gives as a default is one that
    ``movieid annotate --help`` gives for that option (it said ``--batch-size`` 8 where the
    engines size the batch to the GPU)."""
    import click

    from movieid.cli.annotate import annotate

    ctx = click.Context(annotate)
    help_of = {}
    for param in annotate.params:
        record = param.get_help_record(ctx)
        for flag in (*param.opts, *param.secondary_opts):
            help_of[flag] = " ".join(record or ())
    readme = (REPO / "README.md").read_text()
    table = readme.split("The main ones of `annotate`", 1)[1].split("\n\n", 2)[1]
    rows = [re.split(r"(?<!\\)\|", line)[1:-1] for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) > 15
    for options, defaults, _ in rows:
        flags = [re.match(r"--?[\w-]+", option).group() for option in re.findall(r"`([^`]+)`", options)]
        helps = " ".join(help_of[flag] for flag in flags)
        assert _numbers(defaults) <= _numbers(helps), (options, defaults, helps)


def test_what_you_get_is_what_the_sample_film_gives(sample_doc):
    """The README's sample cues are cues of the sample film's SRT as annotate writes it today."""
    from movieid.subtitles import render_srt

    section = (REPO / "README.md").read_text().split("## What you get", 1)[1]
    shown = re.search(r"```\n(.+?)\n```", section, flags=re.S).group(1)
    srt = render_srt(sample_doc)
    for cue in shown.split("\n\n"):
        assert f"{cue}\n\n" in srt, (cue, srt)
