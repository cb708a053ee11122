"""One runner per way the command can run a request, behind one interface.

``LocalRunner`` runs the pipeline in this process, ``WatchRunner`` feeds it the files that
settle in watched folders, ``RayRunner`` runs the shared stages on a Ray cluster. Each plans
the inputs, starts its engine, turns jobs into outcomes and lets go; ``run.py`` drives them.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TextIO

from animeface_seg.batch.discovery import InputError, Job
from animeface_seg.batch.outcome import Outcome
from animeface_seg.batch.plan import Plan, make_plan, plan_remote, recognise_names
from animeface_seg.batch.settings import RunSettings
from animeface_seg.cli.request import RunRequest

if TYPE_CHECKING:
    from animeface_seg.batch.pipeline import FrameProgress
    from animeface_seg.cli.report import Reporter
    from animeface_seg.engine.segmentor import Segmentor


class Runner:
    """Plan, start, run, close: what ``run.py`` asks of every mode."""

    #: Whether the job source stays open until a stop signal (no total, no progress bar).
    endless = False

    def __init__(self, request: RunRequest) -> None:
        self.request = request

    def plan(self, stdin: TextIO | None) -> Plan:
        """Every input found and every output checked (``PlanError`` on conflicts)."""
        r = self.request
        return make_plan(r.inputs, r.spec, recursive=r.recursive, stdin=stdin, null=r.null, root=r.root,
                         allow_empty=self.endless)

    def start(self) -> None:
        """Load the networks or join the cluster (slow; may raise ``EngineError``)."""
        raise NotImplementedError

    @property
    def device_type(self) -> str:
        """``cpu`` or ``cuda``: where the networks run (decides the settings' defaults)."""
        raise NotImplementedError

    @property
    def description(self) -> str:
        """Where the networks run, in words, for the device line."""
        raise NotImplementedError

    def notices(self) -> list[str]:
        """Lines worth telling the user before the work starts."""
        return []

    def start_warnings(self) -> list[str]:
        """Warnings from starting (a damaged cache rebuilt, a cache that cannot be written)."""
        return []

    def source(self, jobs: list[Job], settings: RunSettings, reporter: Reporter) -> Iterable[Job]:
        """The jobs to run (a live source may add to the planned ones)."""
        return jobs

    def outcomes(self, jobs: Iterable[Job], settings: RunSettings,
                 progress: FrameProgress | None = None) -> Iterator[Outcome]:
        """One outcome per job, as each finishes; ``progress`` hears of clips' frames where the engine says."""
        raise NotImplementedError

    def close(self) -> None:
        """Let go of what ``start`` took (and, for a live source, stop it)."""


class LocalRunner(Runner):
    """The streaming pipeline in this process, with a segmentor from ``factory``."""

    def __init__(self, request: RunRequest, factory: Callable[..., Segmentor]) -> None:
        super().__init__(request)
        self.factory = factory
        self.segmentor: Segmentor | None = None
        self._warnings: list[str] = []

    def start(self) -> None:
        from animeface_seg.engine.runtimes.cache_files import CacheWarning

        with warnings.catch_warnings(record=True) as caught:  # the cache's warnings become warning lines
            warnings.simplefilter("always", CacheWarning)
            self.segmentor = self.factory(**self.request.model, device=self.request.device)
        for warning in caught:
            if issubclass(warning.category, CacheWarning):
                self._warnings.append(str(warning.message))
            else:
                warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
        if self.segmentor.device_name.startswith("cuda"):
            import torch

            torch.backends.cudnn.benchmark = True  # the command's choice: one shape per batch, many batches

    @property
    def device_type(self) -> str:
        return self.segmentor.device_name.partition(":")[0]

    @property
    def description(self) -> str:
        return self.segmentor.description

    def notices(self) -> list[str]:
        from animeface_seg.engine.device import cpu_has_native_bf16

        if self.device_type == "cpu" and self.segmentor.precision == "bf16" and not cpu_has_native_bf16():
            return ["note: this CPU has no native bf16, so bf16 is emulated and slower than fp32 here"]
        return []

    def start_warnings(self) -> list[str]:
        return self._warnings

    def outcomes(self, jobs: Iterable[Job], settings: RunSettings,
                 progress: FrameProgress | None = None) -> Iterator[Outcome]:
        from animeface_seg.batch.pipeline import process

        return process(jobs, self.segmentor, settings, progress)


class WatchRunner(LocalRunner):
    """The local pipeline fed by watched folders: the first scan, then every file that settles."""

    endless = True

    def __init__(self, request: RunRequest, factory: Callable[..., Segmentor]) -> None:
        super().__init__(request, factory)
        try:
            from animeface_seg.integrations.watch import DEFAULT_SETTLE, DropFolders
        except ImportError as exc:
            raise InputError(f"--watch needs the watchfiles package ({exc}): pip install 'animeface-seg[watch]'")
        settle = DEFAULT_SETTLE if request.settle is None else request.settle
        self.drop = DropFolders(request.inputs, request.spec, settle=settle, recursive=request.recursive)
        self.drop.start()  # before the first scan, so nothing dropped meanwhile is missed

    def source(self, jobs: list[Job], settings: RunSettings, reporter: Reporter) -> Iterable[Job]:
        from animeface_seg.batch.display import shown

        skipped, todo = self.drop.plan(jobs, self._resume_check(settings))
        for outcome in skipped:
            reporter.add(outcome)
        reporter.info(f"watching {', '.join(map(shown, self.request.inputs))} (settle {self.drop.settle:g} s); "
                      "Ctrl-C or SIGTERM stops")
        return self.drop.jobs(todo, on_job=reporter.processing, on_notice=reporter.info)

    def _resume_check(self, settings: RunSettings) -> Callable[[Job], bool]:
        """Whether a job's outputs are complete with this run's settings, by ``--skip-existing``'s rule (whole
        files carrying the run's record), which the first scan applies on top of its newer-than-input rule."""
        from animeface_seg.batch.stages import Stages

        stages = Stages(self.segmentor, dataclasses.replace(settings, skip_existing=True))

        def checked(job: Job) -> bool:
            outcome = stages.begin(job)
            return isinstance(outcome, Outcome) and outcome.status == "skipped"

        return checked

    def close(self) -> None:
        self.drop.stop()


class RayRunner(Runner):
    """The shared stages on a Ray cluster; inputs and OUT may be object-storage URIs."""

    def __init__(self, request: RunRequest) -> None:
        from animeface_seg.integrations.ray.session import RaySession

        super().__init__(request)
        self.session = RaySession(device=request.device, model=request.model, **request.ray_options)

    def plan(self, stdin: TextIO | None) -> Plan:
        from animeface_seg.integrations.ray.storage import is_uri

        r = self.request
        if not any(is_uri(str(name)) for name in [*r.inputs, r.spec.out_dir]):
            plan = super().plan(stdin)
        else:
            jobs = self.session.discover(r.inputs, r.spec.out_dir, recursive=r.recursive, stdin=stdin)
            jobs = recognise_names(jobs, clips=not r.spec.first_frame)
            _refuse_clips(jobs)
            return plan_remote(jobs, r.spec)
        _refuse_clips(plan.jobs)
        return plan

    def start(self) -> None:
        from animeface_seg.cli.process_setup import reclaim_signal_handlers

        self.session.start()
        reclaim_signal_handlers()  # joining Ray installs handlers that would abort the run on SIGTERM

    @property
    def device_type(self) -> str:
        return self.session.device_type

    @property
    def description(self) -> str:
        return self.session.description

    def outcomes(self, jobs: Iterable[Job], settings: RunSettings,
                 progress: FrameProgress | None = None) -> Iterator[Outcome]:
        return self.session.process(jobs, settings)

    def close(self) -> None:
        self.session.close()


def _refuse_clips(jobs: list[Job]) -> None:
    """Raise ``InputError`` (exit 2, before Ray starts) when a clip is among the inputs: the Ray engine
    takes pictures only (kinds that stream no frames; in object storage, known by their names)."""
    from animeface_seg.batch.display import shown

    clips = [job for job in jobs if job.runnable and job.kind.streams_frames]
    if clips:
        more = f" (and {len(clips) - 1} more)" if len(clips) > 1 else ""
        raise InputError(f"{shown(clips[0].source)}{more}: --engine ray takes no videos or animated images; "
                         "run them with the local engine, or add --first-frame to take one picture per file")
