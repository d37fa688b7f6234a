"""Render a PNG preview of the Grafana dashboard from real data: every panel's queries as a
Prometheus range query, drawn with matplotlib in the dashboard's order.

    python hack/render_dashboard_preview.py --url http://127.0.0.1:9090 --minutes 10 \\
        --out docs/dashboard-preview.png

tests/cluster/test_dashboard.py calls `render()` at the end of its run when
GPUALLOC_DASHBOARD_PREVIEW is set.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "helm" / "gpualloc" / "files" / "dashboard.json"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _range(url: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with _NO_PROXY.open(f"{url}/api/v1/query_range?{params}", timeout=30) as resp:
        payload = json.loads(resp.read())
    result: list[dict[str, Any]] = payload["data"]["result"]
    return result


def _legend(template: str, labels: dict[str, str]) -> str:
    if not template:
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value"
    out = template
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out


def render(url: str, start: float, end: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    step = max(1.0, (end - start) / 300)
    interval = f"{max(60, int(4 * step))}s"
    cols = 4
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 5, rows * 2.9), squeeze=False)
    fig.suptitle(
        f"{dashboard['title']} - preview from a local run "
        f"({datetime.fromtimestamp(start):%Y-%m-%d %H:%M} to {datetime.fromtimestamp(end):%H:%M})",
        fontsize=14,
    )
    for ax, panel in zip(axes.flat, panels, strict=False):
        unit = (panel.get("fieldConfig") or {}).get("defaults", {}).get("unit", "short")
        scale = 100.0 if unit == "percentunit" else (1 / 2**30 if unit == "bytes" else 1.0)
        suffix = {"percentunit": " (%)", "percent": " (%)", "s": " (s)", "bytes": " (GiB)"}
        ax.set_title(panel["title"] + suffix.get(unit, ""), fontsize=10)
        drawn = 0
        for target in panel.get("targets") or []:
            expr = target["expr"].replace("$__rate_interval", interval)
            expr = expr.replace("$queue", "(cluster)")  # the implicit queue without GPUQueues
            for series in _range(url, expr, start, end, step)[:8]:
                xs = [(float(t) - start) / 60 for t, _ in series["values"]]
                ys = [float(v) * scale for _, v in series["values"]]
                label = _legend(target.get("legendFormat", ""), series["metric"])
                ax.plot(xs, ys, label=label[:40], linewidth=1.4)
                drawn += 1
        if drawn:
            ax.legend(fontsize=6, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("minutes", fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="Prometheus base URL")
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard-preview.png")
    args = parser.parse_args()
    end = time.time()
    render(args.url, end - args.minutes * 60, end, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
