"""One run of the command: source -> plan -> runner -> report, with the exit code it ends with.

The plan is checked and OUT probed before any network loads; a run that cannot start removes
the folders it made. Every outcome is reported whole, whatever stops the run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from animeface_seg.batch.display import shown
from animeface_seg.batch.folders import OutputDirError, check_output_dir, remove_empty_folders
from animeface_seg.batch.manifest import Manifest, kept
from animeface_seg.batch.outcome import early_outcome
from animeface_seg.batch.review import write_review
from animeface_seg.batch.settings import RunSettings
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
    watch = request.mode == "watch"
    runner: Runner | None = None
    try:
        runner = make_runner(request, env)
        stdin = None
        if "-" in request.inputs:
            stdin = env.stdin or sys.stdin
            if stdin is None or getattr(stdin, "closed", False):
                raise SetupFailed("INPUT - reads paths from standard input, which is closed: pipe the list in "
                                  "(find ... | animeface-seg - -o OUT)")
        plan = runner.plan(stdin)
        # every record kept in OUT's manifest (the Ray engine keeps its own)
        manifest = Manifest(request.output, warn=_warn) if request.mode != "ray" else None
        reporter = Reporter(None if watch else len(plan.jobs), json_lines=request.json_lines, quiet=request.quiet,
                            stdout=env.stdout, stderr=env.stderr, on_record=manifest and manifest.add)
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
        if not jobs and not watch:
            reporter.info(reporter.summary())
            if reporter.counts["error"]:
                raise SetupFailed("nothing left to process: every input failed (see above); no network was loaded")
            runner.close()
            return ExitCode.OK
        local_out = isinstance(request.output, Path)
        created = check_output_dir(request.output) if local_out else []
        stale = remove_stale_temp_files(request.output) if local_out else []
        try:
            runner.start()
        except BaseException:
            remove_empty_folders(created)  # a run that cannot start leaves no trace
            raise
    except OutputDirError as exc:
        _close(runner)
        raise SetupFailed(str(exc)) from None
    except KeyboardInterrupt as exc:
        _close(runner)
        typer.echo("interrupted before any input was processed", err=True)
        return ExitCode.OK if watch else stop_code(exc)
    except BaseException:
        _close(runner)
        raise

    settings = RunSettings.decide(request.output, runner.device_type, kinds=request.kinds,
                                  batch_size=request.batch_size,
                                  workers=request.workers, skip_existing=request.skip_existing,
                                  max_pixels=request.max_pixels, layout=request.layout,
                                  memory_budget=request.memory_budget, frame_step=request.frame_step,
                                  encode=request.encode)
    reporter.info(f"device: {runner.description}; {len(jobs)} input(s) -> {shown(request.output)}")
    if stale:
        reporter.info(f"removed {len(stale)} temporary file(s) left in {shown(request.output)} by a run that was killed")
    for line in runner.start_warnings():
        _warn(line)
    for line in runner.notices():
        reporter.info(line)
    with reporter, kept(manifest, periodic=watch):  # the manifest is written however the run ends
        try:
            stop = consume(runner.outcomes(runner.source(sent, settings, reporter), settings, reporter), reporter)
        finally:
            runner.close()
    try:  # the review page, once the manifest is complete
        if request.review:
            reporter.info(write_review(request.output, warn=_warn))
    except KeyboardInterrupt as exc:
        stop = stop or exc
    try:
        with signals_deferred():
            if isinstance(stop, StreamClosed):
                typer.echo(f"animeface-seg: error: {stop}", err=True)
            reporter.info(reporter.summary(stop is not None))
    except KeyboardInterrupt as exc:  # a stop signal after the work ended: still say so in the exit code
        stop = stop or exc
    if stop is not None and (not watch or isinstance(stop, StreamClosed)):
        return stop_code(stop)
    return ExitCode.FAILED if reporter.counts["error"] else ExitCode.OK


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
