"""One run of the command: source -> plan -> runner -> report, with the exit code it ends with.

``execute`` decides how the run ends (exit codes, stop signals, set-up errors); the program's steps
below it (plan, start, process, review, summary) only do the work. The plan is checked and OUT
probed before any network loads; a run that cannot start removes the folders it made. Every
outcome is reported whole, whatever stops the run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import typer

from animeface_seg.batch.discovery import Job
from animeface_seg.batch.display import shown
from animeface_seg.batch.folders import OutputDirError, check_output_dir, remove_empty_folders
from animeface_seg.batch.manifest import Manifest, kept
from animeface_seg.batch.outcome import early_outcome
from animeface_seg.batch.review import write_review
from animeface_seg.batch.tempfiles import remove_stale_temp_files
from animeface_seg.cli.consume import consume
from animeface_seg.cli.exit_codes import ExitCode
from animeface_seg.cli.process_setup import Terminated, signals_deferred
from animeface_seg.cli.report import Reporter, StreamClosed
from animeface_seg.cli.request import RunRequest
from animeface_seg.cli.runners import LocalRunner, RayRunner, Runner, WatchRunner

if TYPE_CHECKING:
    from animeface_seg.cli.app import Environment


class SetupFailed(Exception):
    """The run cannot start; the message is the one error line (exit 2)."""


def make_runner(request: RunRequest, env: Environment) -> Runner:
    """The runner for the request's mode."""
    if request.mode == "ray":
        return RayRunner(request)
    if request.mode == "watch":
        return WatchRunner(request, env.segmentor_factory)
    return LocalRunner(request, env.segmentor_factory)


def execute(request: RunRequest, env: Environment) -> ExitCode:
    """Run the request to its end; the exit code (``SetupFailed`` when it cannot start)."""
    run = _set_up(request, env)
    if isinstance(run, ExitCode):  # nothing was left to process, or a stop signal came first
        return run
    return _exit_code(run, _run_to_end(run))


@dataclass
class _Run:
    """A planned run: its request, runner, reporter, OUT's manifest and the jobs it hands the runner."""

    request: RunRequest
    runner: Runner
    reporter: Reporter
    manifest: Manifest | None
    jobs: list[Job]
    """The jobs still to process (discovery settled the others)."""
    sent: list[Job]
    """What the runner is given: ``jobs``, or every job where the Ray engine reports settled ones itself."""
    stale: list[Path] = field(default_factory=list)
    """Temporary files a killed run left in OUT, removed before the start."""


def _set_up(request: RunRequest, env: Environment) -> _Run | ExitCode:
    """Plan and start the run; how set-up ends when nothing is left to do, OUT is unusable or a stop signal
    comes (the runner closed, ``SetupFailed`` for a one-line error)."""
    runner: Runner | None = None
    try:
        runner = make_runner(request, env)
        run = _plan(request, env, runner)
        if not run.jobs and request.mode != "watch":
            return _nothing_left(run)
        run.stale = _start(run)
        return run
    except OutputDirError as exc:
        _close(runner)
        raise SetupFailed(str(exc)) from None
    except KeyboardInterrupt as exc:
        _close(runner)
        typer.echo("interrupted before any input was processed", err=True)
        return ExitCode.OK if request.mode == "watch" else stop_code(exc)
    except BaseException:
        _close(runner)
        raise


def _plan(request: RunRequest, env: Environment, runner: Runner) -> _Run:
    """Every input's plan; the inputs discovery settled (failed, or the same file again) are reported now."""
    plan = runner.plan(_stdin(request, env))
    # every record kept in OUT's manifest (the Ray engine keeps its own)
    manifest = Manifest(request.spec.out_dir, warn=_warn) if request.mode != "ray" else None
    reporter = Reporter(None if request.mode == "watch" else len(plan.jobs), json_lines=request.json_lines,
                        quiet=request.quiet, stdout=env.stdout, stderr=env.stderr,
                        on_record=manifest and manifest.add)
    jobs, settled = [], []
    for job in plan.jobs:
        early = early_outcome(job)
        if early is None:
            jobs.append(job)
        else:
            settled.append(early)
    # the Ray engine reports settled inputs itself, so that the manifest it keeps holds their records too
    sent = plan.jobs if manifest is None and jobs else jobs
    if sent is jobs:
        for outcome in settled:
            reporter.add(outcome)
    return _Run(request, runner, reporter, manifest, jobs, sent)


def _stdin(request: RunRequest, env: Environment) -> TextIO | None:
    """Standard input when an INPUT is ``-`` (it must be open), else ``None``."""
    if "-" not in request.inputs:
        return None
    stdin = env.stdin or sys.stdin
    if stdin is None or getattr(stdin, "closed", False):
        raise SetupFailed("INPUT - reads paths from standard input, which is closed: pipe the list in "
                          "(find ... | animeface-seg - -o OUT)")
    return stdin


def _nothing_left(run: _Run) -> ExitCode:
    """Every input was settled by discovery: the summary, and no network loaded (exit 2 if any failed)."""
    run.reporter.info(run.reporter.summary())
    if run.reporter.counts["error"]:
        raise SetupFailed("nothing left to process: every input failed (see above); no network was loaded")
    run.runner.close()
    return ExitCode.OK


def _start(run: _Run) -> list[Path]:
    """Make and probe a local OUT, remove a killed run's temporary files, start the runner; the files removed.

    A runner that cannot start leaves no trace: the folders made for OUT are removed again."""
    output = run.request.spec.out_dir
    local_out = isinstance(output, Path)
    created = check_output_dir(output) if local_out else []
    stale = remove_stale_temp_files(output) if local_out else []
    try:
        run.runner.start()
    except BaseException:
        remove_empty_folders(created)
        raise
    return stale


def _run_to_end(run: _Run) -> KeyboardInterrupt | None:
    """Process the inputs, write the review page, print the summary; the stop that cut the run short, if any.

    A stop signal after the work ended skips nothing that is left: it only shows in the exit code."""
    stop = _process(run)
    stop = _then(stop, partial(_review, run))
    return _then(stop, partial(_summarise, run, stop))


def _process(run: _Run) -> KeyboardInterrupt | None:
    """The device line and notices, then every job through the runner; the stop that ended it early."""
    request, runner, reporter = run.request, run.runner, run.reporter
    settings = request.settings(runner.device_type)
    reporter.info(f"device: {runner.description}; {len(run.jobs)} input(s) -> {shown(request.spec.out_dir)}")
    if run.stale:
        reporter.info(f"removed {len(run.stale)} temporary file(s) left in {shown(request.spec.out_dir)} by a run that "
                      "was killed")
    for line in runner.start_warnings():
        _warn(line)
    for line in runner.notices():
        reporter.info(line)
    with reporter, kept(run.manifest, periodic=request.mode == "watch"):  # written however the run ends
        try:
            return consume(runner.outcomes(runner.source(run.sent, settings, reporter), settings, reporter),
                           reporter)
        finally:
            runner.close()


def _review(run: _Run) -> None:
    """The review page, once the manifest is complete (``--review``)."""
    if run.request.spec.review:
        run.reporter.info(write_review(run.request.spec.out_dir, warn=_warn))


def _summarise(run: _Run, stop: KeyboardInterrupt | None) -> None:
    """The summary line (and the error that closed standard output), never cut by a further signal."""
    with signals_deferred():
        if isinstance(stop, StreamClosed):
            typer.echo(f"animeface-seg: error: {stop}", err=True)
        run.reporter.info(run.reporter.summary(stop is not None))


def _then(stop: KeyboardInterrupt | None, step: Callable[[], None]) -> KeyboardInterrupt | None:
    """Run a closing step; a stop signal during it is kept (the first stop wins), not raised."""
    try:
        step()
    except KeyboardInterrupt as exc:
        return stop or exc
    return stop


def _exit_code(run: _Run, stop: KeyboardInterrupt | None) -> ExitCode:
    """A stop's code (in watch mode only a closed standard output's), else 1 if any input failed, else 0."""
    if stop is not None and (run.request.mode != "watch" or isinstance(stop, StreamClosed)):
        return stop_code(stop)
    return ExitCode.FAILED if run.reporter.counts["error"] else ExitCode.OK


def _warn(message: str) -> None:
    typer.echo(f"animeface-seg: warning: {message}", err=True)


def _close(runner: Runner | None) -> None:
    if runner is not None:
        runner.close()


def stop_code(stop: KeyboardInterrupt) -> ExitCode:
    """The exit code of a run stopped by ``stop`` (Ctrl-C, SIGTERM, standard output failing)."""
    if isinstance(stop, StreamClosed):
        return stop.exit_code
    return ExitCode.TERMINATED if isinstance(stop, Terminated) else ExitCode.INTERRUPTED
