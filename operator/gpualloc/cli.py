"""The `gpualloc` command line: run | plan | simulate | bench."""

from __future__ import annotations

import click

from gpualloc import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


def _register() -> None:
    from gpualloc.cli_bench import bench_group
    from gpualloc.cli_explain import explain_command
    from gpualloc.cli_plan import plan_command
    from gpualloc.cli_run import run_command
    from gpualloc.cli_simulate import simulate_command

    main.add_command(plan_command)
    main.add_command(explain_command)
    main.add_command(run_command)
    main.add_command(bench_group)
    main.add_command(simulate_command)


_register()

if __name__ == "__main__":
    main()
