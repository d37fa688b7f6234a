"""Generate the Grafana dashboard (helm/gpualloc/files/dashboard.json) with the
grafana-foundation-sdk. Run `make dashboards`; a unit test fails when the file drifts.

Every panel's PromQL is tested against a real Prometheus scraping a real operator and the
DCGM exporter (tests/cluster/test_dashboard.py) and checked by promtool
(tests/cluster/test_promql.py).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "helm" / "gpualloc" / "files" / "dashboard.json"
UID = "gpualloc-overview"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
AnyPanel = stat.Panel | table.Panel | timeseries.Panel


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stacked | stat | table
    width: int = 12
    height: int = 8


# Rows of panels, top to bottom. `$__rate_interval` is Grafana's; tests replace it.
ROWS: list[tuple[str, list[PanelSpec]]] = [
    (
        "Allocation",
        [
            PanelSpec(
                "GPUs allocated",
                "Fraction of the managed nodes' GPUs held by gpualloc jobs after the last plan.",
                (Query("sum(gpualloc_allocated_gpus) / sum(gpualloc_cluster_gpus)"),),
                unit="percentunit",
                kind="stat",
                width=6,
                height=5,
            ),
            PanelSpec(
                "Cluster GPUs",
                "Allocatable GPUs on managed nodes and how many are allocated.",
                (
                    Query("sum(gpualloc_cluster_gpus)", "total"),
                    Query("sum(gpualloc_allocated_gpus)", "allocated"),
                ),
                kind="stat",
                width=6,
                height=5,
            ),
            PanelSpec(
                "Pending jobs",
                "Jobs waiting for GPUs (all priorities).",
                (Query("sum(gpualloc_pending_jobs) or vector(0)"),),
                kind="stat",
                width=6,
                height=5,
            ),
            PanelSpec(
                "Prometheus input",
                "1: GPU health and demand are read from Prometheus; 0: Prometheus does not "
                "answer and gpualloc plans from node capacity alone; -1: not configured.",
                (Query("max(gpualloc_prometheus_up)"),),
                kind="stat",
                width=6,
                height=5,
            ),
            PanelSpec(
                "GPU allocation ratio",
                "Allocated / allocatable GPUs over time, for the whole cluster.",
                (Query("sum(gpualloc_allocated_gpus) / sum(gpualloc_cluster_gpus)", "cluster"),),
                unit="percentunit",
            ),
            PanelSpec(
                "GPU allocation ratio by product",
                "Allocated / allocatable GPUs per GPU product (node label nvidia.com/gpu.product).",
                (
                    Query(
                        "sum by (product) (gpualloc_allocated_gpus) / "
                        "sum by (product) (gpualloc_cluster_gpus)",
                        "{{product}}",
                    ),
                ),
                unit="percentunit",
            ),
            PanelSpec(
                "Allocated GPUs per namespace",
                "GPUs held by each namespace's gpualloc jobs.",
                (
                    Query(
                        "sum by (namespace) (gpualloc_job_allocated_gpus)",
                        "{{namespace}}",
                    ),
                ),
                kind="stacked",
            ),
            PanelSpec(
                "Allocated GPUs per job",
                "The 20 jobs holding the most GPUs now.",
                (
                    Query(
                        "topk(20, sum by (namespace, job_name, kind, priority) "
                        "(gpualloc_job_allocated_gpus))",
                    ),
                ),
                kind="table",
            ),
        ],
    ),
    (
        "Waiting work",
        [
            PanelSpec(
                "Pending jobs by priority",
                "Jobs the last plan could not place, by priority.",
                (Query("sum by (priority) (gpualloc_pending_jobs)", "priority {{priority}}"),),
                kind="stacked",
            ),
            PanelSpec(
                "Longest wait by priority",
                "How long the oldest waiting job of each priority has waited since creation.",
                (Query("max by (priority) (gpualloc_job_wait_seconds)", "priority {{priority}}"),),
                unit="s",
            ),
        ],
    ),
    (
        "GPU queues",
        [
            PanelSpec(
                "GPUs in use and nominal per queue",
                "GPUs each GPUQueue's jobs hold (its children's included) and its nominal "
                "quota; above nominal it borrows. Without GPUQueues: the implicit queue "
                "(cluster).",
                (
                    Query("sum by (queue) (gpualloc_queue_allocated_gpus)", "{{queue}} in use"),
                    Query("sum by (queue) (gpualloc_queue_nominal_gpus)", "{{queue}} nominal"),
                ),
                width=12,
            ),
            PanelSpec(
                "Borrowed GPUs per queue",
                "GPUs each GPUQueue holds beyond its nominal quota (reclaimable when their "
                "owners need them back).",
                (Query("sum by (queue) (gpualloc_queue_borrowed_gpus)", "{{queue}}"),),
                kind="stacked",
                width=12,
            ),
            PanelSpec(
                "Pending jobs per queue",
                "Jobs of each GPUQueue the last plan could not place.",
                (Query("sum by (queue) (gpualloc_queue_pending_jobs)", "{{queue}}"),),
                kind="stacked",
                width=12,
            ),
            PanelSpec(
                "Fair share per queue",
                "Borrowed GPUs / weight of each GPUQueue: weighted max-min fairness levels "
                "it between sibling queues that want more.",
                (Query("max by (queue) (gpualloc_queue_fair_share)", "{{queue}}"),),
                width=12,
            ),
        ],
    ),
    (
        # repeated for each queue the `queue` variable selects (REPEAT_BY)
        "Queue $queue",
        [
            PanelSpec(
                "GPUs of $queue by product",
                "GPUs the queue's jobs hold per GPU product, and its nominal quota and "
                "borrowed GPUs per quota entry (product: a GPU product or *).",
                (
                    Query(
                        'sum by (product) (gpualloc_queue_allocated_gpus{queue="$queue"})',
                        "{{product}} in use",
                    ),
                    Query(
                        'sum by (product) (gpualloc_queue_nominal_gpus{queue="$queue"})',
                        "{{product}} nominal",
                    ),
                    Query(
                        'sum by (product) (gpualloc_queue_borrowed_gpus{queue="$queue"})',
                        "{{product}} borrowed",
                    ),
                ),
                width=12,
            ),
            PanelSpec(
                "Pending jobs of $queue",
                "The queue's jobs (its children's included) the last plan could not place.",
                (Query('sum(gpualloc_queue_pending_jobs{queue="$queue"})', "pending"),),
                width=6,
            ),
            PanelSpec(
                "Fair share of $queue",
                "The queue's borrowed GPUs / weight after the last plan.",
                (Query('max(gpualloc_queue_fair_share{queue="$queue"})', "fair share"),),
                width=6,
            ),
        ],
    ),
    (
        "Solver",
        [
            PanelSpec(
                "Solve duration",
                "CP-SAT solve time per planning round: 95th percentile and mean.",
                (
                    Query(
                        "histogram_quantile(0.95, sum by (le) "
                        f"(rate(gpualloc_solve_duration_seconds_bucket[{RATE}])))",
                        "p95",
                    ),
                    Query(
                        f"sum(rate(gpualloc_solve_duration_seconds_sum[{RATE}])) / "
                        f"sum(rate(gpualloc_solve_duration_seconds_count[{RATE}]))",
                        "mean",
                    ),
                ),
                unit="s",
                width=8,
            ),
            PanelSpec(
                "Solver gap",
                "Relative gap between the last plan and the solver's proven bound "
                "(0 = proven optimal).",
                (Query("max(gpualloc_solver_gap_ratio)", "gap"),),
                unit="percentunit",
                width=8,
            ),
            PanelSpec(
                "Planning rounds by solver status",
                "Rounds per second by CP-SAT status, and failed rounds.",
                (
                    Query(
                        f"sum by (status) (rate(gpualloc_rounds_total[{RATE}]))",
                        "{{status}}",
                    ),
                    Query(f"sum(rate(gpualloc_round_errors_total[{RATE}]))", "errors"),
                ),
                unit="ops",
                width=8,
            ),
            PanelSpec(
                "Preemptions",
                "Jobs evicted (whole gangs) for higher-priority work.",
                (Query(f"sum(increase(gpualloc_preemptions_total[{RATE}]))", "evicted jobs"),),
                width=12,
            ),
            PanelSpec(
                "Fragmented GPUs",
                "Free GPUs on partly used nodes (a whole-node worker cannot use them), and GPU "
                "nodes with every GPU free.",
                (
                    Query("sum(gpualloc_fragmented_gpus)", "fragmented GPUs"),
                    Query("sum(gpualloc_whole_free_nodes)", "whole free nodes"),
                ),
                width=12,
            ),
        ],
    ),
    (
        "GPU health and utilisation (DCGM)",
        [
            PanelSpec(
                "GPUs with XID errors",
                "GPUs that reported an XID error in the last 5 minutes, per node (DCGM "
                "exporter), and the GPUs gpualloc took out of capacity for them.",
                (
                    Query(
                        "count by (Hostname) (max_over_time(DCGM_FI_DEV_XID_ERRORS[5m]) > 0)",
                        "{{Hostname}} (DCGM)",
                    ),
                    Query(
                        "sum by (node) (gpualloc_unhealthy_gpus)",
                        "{{node}} (out of capacity)",
                    ),
                ),
                width=8,
            ),
            PanelSpec(
                "GPU utilisation by node",
                "Mean DCGM_FI_DEV_GPU_UTIL over each node's GPUs.",
                (Query("avg by (Hostname) (DCGM_FI_DEV_GPU_UTIL)", "{{Hostname}}"),),
                unit="percent",
                width=8,
            ),
            PanelSpec(
                "GPU memory used by node",
                "Framebuffer memory used on each node's GPUs (DCGM_FI_DEV_FB_USED, MiB).",
                (
                    Query(
                        "sum by (Hostname) (DCGM_FI_DEV_FB_USED) * 1024 * 1024",
                        "{{Hostname}}",
                    ),
                ),
                unit="bytes",
                width=8,
            ),
        ],
    ),
]


# Rows repeated per value of a template variable, and that variable's query
REPEAT_BY = {"Queue $queue": "queue"}
QUEUE_VALUES = "label_values(gpualloc_queue_nominal_gpus, queue)"


def _queue_variable() -> db.QueryVariable:
    return (
        db.QueryVariable("queue")
        .label("Queue")
        .description("GPUQueues whose row to show ((cluster): the implicit queue).")
        .datasource(DATASOURCE)
        .query(QUEUE_VALUES)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(VariableOption(selected=True, text=["All"], value=["$__all"]))  # every queue
    )


def _targets(builder: AnyPanel, spec: PanelSpec) -> None:
    for i, q in enumerate(spec.queries):
        target = prometheus.Dataquery().expr(q.expr).ref_id(chr(ord("A") + i))
        if q.legend:
            target = target.legend_format(q.legend)
        if spec.kind in ("stat", "table"):
            target = target.instant()
        builder.with_target(target)


def _panel(spec: PanelSpec, panel_id: int) -> AnyPanel:
    builder: AnyPanel
    if spec.kind == "stat":
        builder = (
            stat.Panel()
            .graph_mode(common.BigValueGraphMode.AREA)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]))
        )
    elif spec.kind == "table":
        builder = table.Panel()
    else:
        ts = (
            timeseries.Panel()
            .fill_opacity(10)
            .legend(
                cb.VizLegendOptions()
                .show_legend(True)
                .display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM)
            )
        )
        if spec.kind == "stacked":
            ts = ts.fill_opacity(40).stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
        builder = ts
    builder = (
        builder.id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .unit(spec.unit)
        .span(spec.width)
        .height(spec.height)
    )
    _targets(builder, spec)
    return builder


def build() -> db.Dashboard:
    dash = (
        db.Dashboard("gpualloc: GPU allocation")
        .uid(UID)
        .description(
            "Allocation of GPU nodes to LLM training and inference jobs by gpualloc: "
            "allocation ratio, waiting work, GPU queues (a row per queue), solver health, "
            "GPU health (DCGM)."
        )
        .tags(["gpualloc", "gpu"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(_queue_variable())
    )
    next_id = 1
    for row, panels in ROWS:
        header = db.Row(row).id(next_id)
        if row in REPEAT_BY:
            header = header.repeat(REPEAT_BY[row])
        dash = dash.with_row(header)
        next_id += 1
        for spec in panels:
            dash = dash.with_panel(_panel(spec, next_id))
            next_id += 1
    return dash


def render() -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def panel_queries(dashboard: dict[str, object]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query of a rendered dashboard."""
    out = []
    for panel in dashboard["panels"]:  # type: ignore[attr-defined]
        for target in panel.get("targets") or []:
            out.append((panel["title"], target["expr"]))
    return out


def main() -> None:
    text = render()
    if "--check" in sys.argv:
        if OUT.read_text() != text:
            sys.exit(f"{OUT.relative_to(ROOT)} is out of date: run `make dashboards`")
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    count = len(panel_queries(json.loads(text)))
    print(f"wrote {OUT.relative_to(ROOT)} ({count} queries)")


if __name__ == "__main__":
    main()
