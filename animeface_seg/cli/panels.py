"""``--help`` in panels: the options grouped under titles, in plain text (no rich, nothing heavy imported).

Each option names its panel with Typer's ``rich_help_panel=``; Typer only draws panels in its rich
mode, which this command keeps off (fast help, plain error lines), so this command class draws them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from typer.core import TyperCommand

if TYPE_CHECKING:
    import click

INPUTS = "Inputs"
OUTPUTS = "Outputs"
CLIPS = "Videos and animated images"
RESUME = "Resume and safety"
SPEED = "Speed and devices"
WEIGHTS = "Weights"
WATCH = "Watch a folder"
SCALING = "Scaling out (Ray)"
REPORTING = "Reporting and help"
SERVE = "Serving over HTTP"

#: Panel titles in the order ``--help`` shows them; an option without a panel (``--help``) goes in the last.
PANELS = (SERVE, INPUTS, OUTPUTS, CLIPS, RESUME, SPEED, WEIGHTS, WATCH, SCALING, REPORTING)


class PanelledCommand(TyperCommand):
    """A Typer command whose ``--help`` lists its parameters panel by panel instead of in one list."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: dict[str, list[tuple[str, str]]] = {title: [] for title in PANELS}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                rows[getattr(param, "rich_help_panel", None) or REPORTING].append(record)
        for title, records in rows.items():
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)
