"""`gpualloc run`: start the operator."""

from __future__ import annotations

import logging
import os

import click

from gpualloc.cli_options import kubeconfig_option


@click.command("run")
@kubeconfig_option
@click.option(
    "--metrics-port",
    type=int,
    default=8080,
    show_default=True,
    help="Port of the Prometheus /metrics endpoint (0 = off).",
)
@click.option(
    "--metrics-address",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics endpoint binds to. In a pod, Prometheus scrapes the pod IP: "
    "pass 0.0.0.0 (the Helm chart does).",
)
@click.option(
    "--health-port",
    type=int,
    default=8081,
    show_default=True,
    help="Port of the liveness endpoint /healthz (on 0.0.0.0: the kubelet probes the pod IP).",
)
@click.option(
    "--round-deadline",
    type=float,
    default=0.0,
    help="Seconds the leader may go without completing a planning round before /healthz "
    "reports unhealthy (0 = max(3 x resync, 300)).",
)
@click.option(
    "--lease-duration",
    type=float,
    envvar="GPUALLOC_LEASE_SECONDS",
    default=15.0,
    show_default=True,
    help="Seconds a follower waits, on its own clock, for the leader's lease to change before "
    "taking it over (env GPUALLOC_LEASE_SECONDS).",
)
@click.option(
    "--renew-deadline",
    type=float,
    envvar="GPUALLOC_RENEW_DEADLINE_SECONDS",
    default=None,
    help="Seconds the leader keeps acting without a successful renew; below the lease "
    "duration [default: 2/3 of it].",
)
@click.option(
    "--retry-period",
    type=float,
    envvar="GPUALLOC_RETRY_PERIOD_SECONDS",
    default=None,
    help="Seconds between lease renewals / acquisition attempts [default: 2/15 of the lease "
    "duration].",
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
@click.option(
    "--unblock-seconds",
    type=click.FloatRange(0, 600),
    envvar="GPUALLOC_UNBLOCK_SECONDS",
    default=10.0,
    show_default=True,
    help="Seconds of solving per pass, between rounds, to write each waiting job's "
    "status.unblock (what would let it run now; 0 = off).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def run_command(
    kubeconfig: str | None,
    metrics_port: int,
    metrics_address: str,
    health_port: int,
    round_deadline: float,
    lease_duration: float,
    renew_deadline: float | None,
    retry_period: float | None,
    lease_namespace: str,
    debounce: float,
    resync: float,
    unblock_seconds: float,
    verbose: bool,
) -> None:
    """Run the gpualloc operator: watch jobs, nodes and pods; plan globally; place pods.

    Two or more replicas may run: a Lease elects the one that plans and acts.
    """
    import faulthandler
    import signal

    _fewer_malloc_arenas()
    _without_pandas()
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
    os.environ["GPUALLOC_UNBLOCK_SECONDS"] = str(unblock_seconds)
    os.environ["GPUALLOC_HEALTH_PORT"] = str(health_port)
    os.environ["GPUALLOC_ROUND_DEADLINE_SECONDS"] = str(round_deadline)
    # client-go's defaults are 15 / 10 / 2 s: keep their proportions for other durations
    renew_deadline = renew_deadline or lease_duration * 2 / 3
    retry_period = retry_period or lease_duration * 2 / 15
    if not lease_duration > renew_deadline > 1.2 * retry_period > 0:
        raise click.UsageError(
            "need --lease-duration > --renew-deadline > 1.2 x --retry-period > 0"
        )
    os.environ["GPUALLOC_LEASE_SECONDS"] = str(lease_duration)
    os.environ["GPUALLOC_RENEW_DEADLINE_SECONDS"] = str(renew_deadline)
    os.environ["GPUALLOC_RETRY_PERIOD_SECONDS"] = str(retry_period)
    # `kill -USR1 <pid>` prints every thread's stack to the log: where a wedged replica hangs
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kopf.objects", "kopf.activities.probe", "kubernetes.client.rest"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if metrics_port:
        start_http_server(metrics_port, addr=metrics_address)
    # /healthz is gpualloc's own (controller/liveness.py), served once the handlers start
    kopf.run(
        clusterwide=True,
        standalone=True,  # leader election is gpualloc's own Lease, see controller/leader.py
    )


def _without_pandas() -> None:
    """OR-Tools' cp_model imports pandas (~40 MB resident) only for its `*_series` helpers,
    which gpualloc never calls. In the operator process a stand-in module takes its place:
    cp_model's module-level `Union[pd.Index, pd.Series]` sees placeholder classes, and any
    other use of pandas fails loudly instead of silently using the stand-in."""
    import sys
    import types

    if "pandas" in sys.modules:
        return
    stand_in = types.ModuleType("pandas", "gpualloc's stand-in: pandas is not loaded here")
    for name in ("Index", "Series"):
        setattr(stand_in, name, type(name, (), {"__module__": "pandas"}))

    def missing(attr: str) -> object:
        raise AttributeError(f"pandas.{attr}: pandas is not loaded in the gpualloc operator")

    stand_in.__getattr__ = missing  # type: ignore[method-assign]
    sys.modules["pandas"] = stand_in


def _fewer_malloc_arenas() -> None:
    """glibc gives each of the ~50 writer and watch threads a malloc arena of its own; in a
    burst they fragment into RSS nobody uses. Two arenas bound that (before threads start)."""
    import contextlib
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to bound
        if name:
            ctypes.CDLL(name).mallopt(-8, 2)  # M_ARENA_MAX
