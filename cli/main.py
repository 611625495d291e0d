"""The `hybridnas` command. Each sub-command lives in its own module and registers on `app`.

User mistakes (bad configs, unknown names, unreachable storage) surface as one line on stderr
with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import click
import typer

from hybridnas.cli import models_cmds
from hybridnas.cli import service_cmds
from hybridnas.cli.errors import USER_ERRORS

app = typer.Typer(
    name="hybridnas",
    help="Neural-architecture search for CNN/attention hybrid image classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_cmds.register(app)
service_cmds.register(app)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except click.UsageError as err:
        hint = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
        print(f"error: {err.format_message()}{hint}", file=sys.stderr)
        sys.exit(2)
    except click.ClickException as err:
        print(f"error: {err.format_message()}", file=sys.stderr)
        sys.exit(2)
