"""Click options that more than one `gpualloc` command takes."""

from __future__ import annotations

import click

kubeconfig_option = click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, exists=True),
    help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster).",
)
