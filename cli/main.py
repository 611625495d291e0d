"""The `hybridnas` command. Each sub-command lives in its own module and registers on `app`.

User mistakes (bad configs, unknown names, unreachable storage) surface as one line on stderr
with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext

import typer

from hybridnas.cli import models_cmds
from hybridnas.cli import proxy_cmds
from hybridnas.cli import train_cmds
from hybridnas.cli import service_cmds
from hybridnas.cli import study_cmds
from hybridnas.common import HybridNASError, catch_ctrl_c, ctrl_c_as_request

app = typer.Typer(
    name="hybridnas",
    help="Neural-architecture search for CNN/attention hybrid image classifiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_cmds.register(app)
proxy_cmds.register(app)
train_cmds.register(app)
service_cmds.register(app)
study_cmds.register(app)


# Commands that write to a study: Ctrl-C is a stop request from their first line on
# (common/_interrupt.py), also while they import torch and Ray.
_STOPPABLE = {"launch", "worker", "retrain"}


def main(argv: list[str] | None = None) -> None:
    catch_ctrl_c()
    args = sys.argv[1:] if argv is None else argv
    try:
        with ctrl_c_as_request() if args and args[0] in _STOPPABLE else nullcontext():
            # without standalone mode typer returns the exit code (130 after Ctrl-C) instead of exiting
            code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except KeyboardInterrupt:
        sys.exit(130)
    except HybridNASError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as err:
        ctx = getattr(err, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print(f"error: {err.format_message()}{hint}", file=sys.stderr)
        sys.exit(2)
