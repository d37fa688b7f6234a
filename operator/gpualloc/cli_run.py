"""`gpualloc run`: start the operator."""

from __future__ import annotations

import logging
import os

import click


@click.command("run")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, exists=True),
    help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, then in-cluster).",
)
@click.option(
    "--metrics-port",
    type=int,
    default=8080,
    show_default=True,
    help="Port of the Prometheus /metrics endpoint (0 = off).",
)
@click.option(
    "--metrics-address",
    default="0.0.0.0",
    show_default=True,
    help="Address the metrics endpoint binds to.",
)
@click.option(
    "--health-port",
    type=int,
    default=8081,
    show_default=True,
    help="Port of the liveness endpoint /healthz.",
)
@click.option(
    "--lease-namespace",
    envvar="POD_NAMESPACE",
    default="default",
    show_default=True,
    help="Namespace of the leader-election Lease (env POD_NAMESPACE).",
)
@click.option(
    "--debounce",
    type=float,
    default=1.0,
    show_default=True,
    help="Seconds to batch changes before a planning round (policy may override).",
)
@click.option(
    "--resync",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds between periodic safety re-plans (policy may override).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def run_command(
    kubeconfig: str | None,
    metrics_port: int,
    metrics_address: str,
    health_port: int,
    lease_namespace: str,
    debounce: float,
    resync: float,
    verbose: bool,
) -> None:
    """Run the gpualloc operator: watch jobs, nodes and pods; plan globally; place pods.

    Two or more replicas may run: a Lease elects the one that plans and acts.
    """
    import kopf
    from prometheus_client import start_http_server

    import gpualloc.controller.handlers  # noqa: F401  (registers the handlers)
    from gpualloc.k8s.client import load_config

    if kubeconfig:
        os.environ["KUBECONFIG"] = os.path.abspath(kubeconfig)
    load_config(kubeconfig)
    os.environ["GPUALLOC_LEASE_NAMESPACE"] = lease_namespace
    os.environ["GPUALLOC_DEBOUNCE_SECONDS"] = str(debounce)
    os.environ["GPUALLOC_RESYNC_SECONDS"] = str(resync)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kopf.objects", "kopf.activities.probe", "kubernetes.client.rest"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if metrics_port:
        start_http_server(metrics_port, addr=metrics_address)
    kopf.run(
        clusterwide=True,
        standalone=True,  # leader election is gpualloc's own Lease, see controller/leader.py
        liveness_endpoint=f"http://0.0.0.0:{health_port}/healthz" if health_port else None,
    )
