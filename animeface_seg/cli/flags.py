"""The one place the command's flags become library arguments: every check of the flags together, then the
``RunRequest`` (output spec, segmentor options, how hard to work) they ask for.

``--keep-background`` becomes ``remove_background`` here, once. The checks run in a fixed order, before
anything heavy loads, and each refusal is a ``FlagError`` whose message the command prints (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TextIO

from animeface_seg.batch.display import shown
from animeface_seg.engine.palette import select_classes

if TYPE_CHECKING:
    from animeface_seg.cli.request import RunRequest


class FlagError(Exception):
    """The flags cannot run as given; the message is the one error line (exit 2)."""


def class_names(text: str | None) -> tuple[str, ...]:
    """``--class-masks LIST`` as class names in palette order (none when not given); checked before anything loads."""
    if text is None:
        return ()
    try:
        return select_classes(text)
    except ValueError as exc:
        raise FlagError(f"--class-masks: {exc}") from None


def run_request(flags: SimpleNamespace, classes: tuple[str, ...], stdout: TextIO | None) -> RunRequest:
    """The request the flags (``command``'s parameters by name) ask for, every flag checked; ``classes`` are
    ``class_names(flags.class_masks)``, ``stdout`` the stream ``--json`` writes to. Raises ``FlagError``."""
    output = _checked_output(flags)
    _check_combinations(flags, stdout)
    if flags.review:  # the review page needs a local OUT and never replaces a page of the user's
        from animeface_seg.batch.review import review_problem

        if problem := review_problem(output):
            raise FlagError(problem)
    from animeface_seg.batch.kinds import select
    from animeface_seg.batch.spec import OutputSpec
    from animeface_seg.cli.request import RunRequest

    remove_background = not flags.keep_background
    kinds = select(classes, remove_background=remove_background, cutout=flags.cutout, overlay=flags.overlay)
    spec = OutputSpec(output, kinds,
                      layout=flags.layout, encode=_value(flags.encode), frame_step=flags.frame_step,
                      first_frame=flags.first_frame, review=flags.review)
    model = dict(unet=flags.unet, abg=flags.abg, weights_dir=flags.weights_dir, remove_background=remove_background,
                 precision=flags.precision, runtime=flags.runtime, output_size=_value(flags.size))
    return RunRequest(
        inputs=flags.inputs, spec=spec, mode="watch" if flags.watch else _value(flags.engine), model=model,
        device=flags.device, recursive=flags.recursive, root=flags.root, null=flags.null, settle=flags.settle,
        batch_size=flags.batch_size, workers=flags.workers, skip_existing=flags.skip_existing,
        max_pixels=flags.max_pixels, memory_budget=memory_budget(flags.memory_budget), quiet=flags.quiet,
        json_lines=flags.json_lines, ray_options=_ray_options(flags))


def _needing_mask(flags: SimpleNamespace) -> tuple[str, ...]:
    """The kinds the flags ask for by option (``--cutout``) that need the character mask (``Kind.needs_mask``)."""
    from animeface_seg.batch.kinds import needing_mask, select

    return needing_mask(select((), remove_background=False, cutout=flags.cutout, overlay=flags.overlay))


def _value(choice: Any) -> str:
    """A choice flag's value as text (an ``Enum`` member's value, or the text a default gives)."""
    return getattr(choice, "value", choice)


def _checked_output(flags: SimpleNamespace) -> Path:
    """INPUT and ``-o`` present, and OUT where the engine can write (a local folder, or with Ray a storage URI)."""
    if not flags.inputs:
        raise FlagError("no INPUT given. Try: animeface-seg input/ -o out/  (see --help)")
    if flags.output_name is None:
        raise FlagError("no output folder given: add -o OUT")
    if not flags.output_name:
        raise FlagError("-o is empty: name the output folder (use -o . for the current folder)")
    output = _output_location(flags.output_name, flags.inputs, _value(flags.engine) == "ray")
    if isinstance(output, Path) and output.exists() and not output.is_dir():
        raise FlagError(f"-o {shown(output)} exists and is not a folder")
    return output


def _check_combinations(flags: SimpleNamespace, stdout: TextIO | None) -> None:
    """Refuse flags that contradict each other or the streams, in the order users have always seen them."""
    if flags.keep_background and (kept := _needing_mask(flags)):
        raise FlagError(f"--{kept[0]} needs the character mask, which --keep-background does not compute "
                        f"(the {kept[0]} would be the whole picture): drop one of the two")
    if flags.null and "-" not in flags.inputs:
        raise FlagError("-0 (--null) describes the list read from standard input: add - to the INPUTs")
    if flags.root is not None and not flags.root.is_dir():
        raise FlagError(f"--root {shown(flags.root)} is not a folder")
    if flags.settle is not None and not flags.watch:
        raise FlagError("--settle only applies with --watch")
    if flags.watch and _value(flags.engine) == "ray":
        raise FlagError("--watch runs in this process: it cannot be combined with --engine ray")
    if flags.first_frame and _value(flags.encode) != "frames":
        raise FlagError("--encode makes videos of clips, --first-frame takes one picture per file: drop one")
    if flags.first_frame and flags.frame_step != 1:
        raise FlagError("--frame-step picks frames of a clip, --first-frame takes one picture per file: drop one")
    if flags.json_lines and stdout is None:
        raise FlagError("--json: standard output is closed, so the records have nowhere to go")


def _output_location(output: str, inputs: list[str], ray: bool) -> Path:
    """OUT as a local ``Path``, or with ``--engine ray`` an object-storage location (see integrations/ray)."""
    from animeface_seg.integrations.ray.storage import is_uri, parse_location

    if ray:
        try:
            return parse_location(output)  # type: ignore[return-value]  # a StoragePath is a pure path too
        except ValueError as exc:
            raise FlagError(str(exc)) from None
    remote = [name for name in [*inputs, output] if is_uri(name)]
    if remote:
        raise FlagError(f"{shown(remote[0])}: object storage needs --engine ray (see docs/scaling.md)")
    return Path(output)


def _ray_options(flags: SimpleNamespace) -> dict[str, Any]:
    """The Ray engine's options (none for the local engine); a malformed cluster address is refused here."""
    if _value(flags.engine) == "local":
        return {}
    from animeface_seg.integrations.ray.address import AddressError, check_address

    try:
        check_address(flags.ray_address)
    except AddressError as exc:
        raise FlagError(str(exc)) from None
    return dict(address=flags.ray_address, replicas=flags.replicas, gpus_per_replica=flags.gpus_per_replica,
                s3_endpoint=flags.s3_endpoint)


def memory_budget(text: str | None) -> int | None:
    """``--memory-budget SIZE`` in bytes (0: no limit), ``None`` when not given."""
    if text is None:
        return None
    from animeface_seg.engine.memory import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise FlagError(f"--memory-budget: {exc}") from None
