"""The ``penguiflow`` group: its ``--debug`` flag, how it reports errors, and ``graph``.

Every command turns bad input into a ``CommandError`` that names what and where; the group
prints it as one line, ``penguiflow: <message>``, and exits with its status (2). Anything
else that escapes a command is reported the same way, as ``penguiflow: error: <Type>:
<message>`` with status 1. ``--debug`` adds the traceback, and shows the runtime's warnings
and errors (logged on ``penguiflow``) on stderr.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any

import click

from . import _inspect, _recover, _redis, _run, _serve
from ._errors import CommandError
from ._target import describe_error, load_target

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["cli", "run_command"]

#: The exit status of a command that failed in a way the command did not foresee.
FAILURE_STATUS = 1


class _Group(click.Group):
    """A group that reports its commands' errors in one line (with ``--debug``, in full)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            status = super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            _silence_stdout()  # the reader went away (| head): nothing more to say
            raise click.exceptions.Exit(FAILURE_STATUS) from None
        except CommandError as exc:
            status, message = exc.status, str(exc)
            error: Exception = exc
        except Exception as exc:
            status, error = FAILURE_STATUS, exc
            message = f"error: {describe_error(exc)}"
            if not ctx.params.get("debug"):
                message += " (--debug shows the traceback)"
        else:
            # A command returns its exit status; click's own main would drop it.
            if isinstance(status, int) and status:
                raise click.exceptions.Exit(status)
            return status
        if ctx.params.get("debug"):
            traceback.print_exception(error, file=sys.stderr)
        click.echo(f"penguiflow: {message}", err=True)
        raise click.exceptions.Exit(status)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return  # not a real file (a test's capture): nothing will fail at exit


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--debug",
    is_flag=True,
    help="Show tracebacks, and the runtime's warnings and errors, on stderr.",
)
def cli(debug: bool) -> None:
    """Run, draw, inspect and recover penguiflow flows; serve them from Redis.

    A flow is named MODULE:ATTR: a dotted module name or the path of a .py file, and a flow
    in it or a function that returns one. A store is named by a URL: sqlite:///PATH or
    postgresql://USER@HOST:PORT/DATABASE.
    """
    if "" not in sys.path:
        sys.path.insert(0, "")  # MODULE is looked for from the current directory, as with -m
    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root = logging.getLogger("penguiflow")
        root.addHandler(handler)
        root.setLevel(logging.WARNING)


@cli.command()
@click.argument("target", metavar="MODULE:ATTR")
@click.option(
    "--format",
    "style",
    type=click.Choice(["mermaid", "dot"]),
    default="mermaid",
    show_default=True,
    help="Mermaid flowchart or Graphviz DOT.",
)
def graph(target: str, style: str) -> None:
    """Print the flow's graph, as Mermaid or Graphviz DOT text."""
    from ..viz import flow_to_dot, flow_to_mermaid

    flow = load_target(target).flow
    click.echo(flow_to_mermaid(flow) if style == "mermaid" else flow_to_dot(flow))


for _command in (
    _run.run,
    _recover.recover,
    _inspect.traces,
    _inspect.history,
    _redis.worker,
    _redis.dlq,
    _serve.serve_command,
):
    cli.add_command(_command)


def run_command(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="penguiflow",
            standalone_mode=False,
        )
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return FAILURE_STATUS
    return result if isinstance(result, int) else 0
