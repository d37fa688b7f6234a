"""The `gpualloc` command line: run | plan | explain | simulate | bench."""

from __future__ import annotations

import importlib

import click

from gpualloc import __version__

# Each command is imported only when it runs: `gpualloc run` must not load what plan and
# simulate need (the operator keeps pandas out of its memory, see cli_run._without_pandas).
COMMANDS = {
    "run": "gpualloc.cli_run:run_command",
    "plan": "gpualloc.cli_plan:plan_command",
    "explain": "gpualloc.cli_explain:explain_command",
    "simulate": "gpualloc.cli_simulate:simulate_command",
    "bench": "gpualloc.cli_bench:bench_group",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (click's documented pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attr = COMMANDS[cmd_name].split(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpualloc")
def main() -> None:
    """gpualloc: allocate LLM training and inference jobs to GPU nodes globally.

    \b
    gpualloc run       the operator (on a cluster; see `gpualloc run --help`)
    gpualloc plan      what would go where, from `kubectl get ... -o yaml` files
    gpualloc explain   what would let a waiting job run now (on a live cluster)
    gpualloc simulate  replay the openb GPU-cluster trace with a placement policy
    gpualloc bench     benchmarks that write JSON results
    """


if __name__ == "__main__":
    main()
