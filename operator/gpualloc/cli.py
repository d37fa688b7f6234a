"""The `gpualloc` command line: run | plan | simulate | bench."""

from __future__ import annotations

import click

from gpualloc import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpualloc")
def main() -> None:
    """gpualloc: allocate LLM training and inference jobs to GPU nodes globally.

    \b
    Commands:
      plan      what would go where, from `kubectl get ... -o yaml` files (no cluster)
      run       start the operator against a cluster
      simulate  replay a GPU-cluster trace (openb) with a placement policy
    """


def _register() -> None:
    from gpualloc.cli_bench import bench_group
    from gpualloc.cli_plan import plan_command
    from gpualloc.cli_run import run_command
    from gpualloc.cli_simulate import simulate_command

    main.add_command(plan_command)
    main.add_command(run_command)
    main.add_command(bench_group)
    main.add_command(simulate_command)


_register()

if __name__ == "__main__":
    main()
