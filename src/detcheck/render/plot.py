"""`detcheck plot`: the distinct values (coloured by fingerprint, cluster bands shaded) and the
accumulation curve, from a report dict, with matplotlib (imported only when a figure is drawn)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from detcheck.errors import UsageError
from detcheck.text import count

# matplotlib is a dependency: only a broken or hand-pruned environment lacks it
INSTALL_HINT = "plotting needs matplotlib, which detcheck depends on: pip install matplotlib"


FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg")
MAX_STRIPS = 12  # cluster close-ups: the most-called clusters, in value order


def plot_report(report: dict, out: Path, dpi: int = 150, title: str | None = None) -> Path:
    if out.suffix.lower() not in FORMATS:
        raise UsageError(f"-o must end in {', '.join(FORMATS)}, got {out.name!r}")
    if not 30 <= dpi <= 1200:
        raise UsageError(f"--dpi must be between 30 and 1200, got {dpi}")
    plt = pyplot()
    fig = draw(report, title)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def pyplot():
    """matplotlib's pyplot on the Agg backend (files, never a window), or how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    # every text on a figure is literal: a fingerprint such as fp_$\foo{$ is server text, and
    # matplotlib would read it as mathtext (and fail); detcheck's own labels use none
    plt.rcParams["text.parse_math"] = False
    return plt


def plain_log_ticks(axis) -> None:
    """1, 10, 100 ... written out: a log axis's own labels are mathtext, which is off (above)
    and would print as `$\\mathdefault{10^{2}}$`."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(
        FuncFormatter(lambda value, _: f"{value:,.0f}" if value >= 1 else f"{value:g}")
    )
    axis.set_minor_formatter(NullFormatter())


@dataclass(frozen=True)
class Look:
    """How a figure is laid out for where it is shown."""

    width_in: float = 14.0
    least_pt: float = 0.0  # no text smaller than this
    strip_columns: int = 6  # cluster close-ups side by side
    title: bool = True  # what was measured, above the figure (a page says it in words)
    stacked: bool = False  # the accumulation curve under the values, not beside them

    def pt(self, size: float) -> float:
        return max(size, self.least_pt)


FILE = Look()  # `detcheck plot`: a wide image, read zoomed in
# A page draws the figure 960 px wide (60rem): 9.6 in at 72 pt/in is shown 1.39 times its size,
# so 12 pt text is 16.7 px, as large as the page's 16 px text.
PAGE = Look(width_in=9.6, least_pt=12.0, strip_columns=3, title=False, stacked=True)


def draw(report: dict, title: str | None = None, look: Look = FILE):
    """The figure of a report (flip: values, clusters close up, accumulation; generate: where
    the paths part), for a file or an HTML page (`look`)."""
    plt = pyplot()
    with plt.rc_context({"font.size": look.pt(10), "legend.fontsize": look.pt(8)}):
        if report.get("kind") == "generate":
            return _plot_generation(plt, report, title, look)
        return _plot_values(plt, report, title, look)


def _plot_values(plt, report: dict, title: str | None, look: Look):
    strips = _strip_clusters(report["clusters"])
    columns = min(look.strip_columns, max(1, len(strips)))
    strip_rows = -(-len(strips) // columns)
    top = [2.4, 1.6] if look.stacked else [2.4]
    height = (4.2 + 3.0 + 2.9 * strip_rows) if look.stacked else (5.2 + 2.3 * strip_rows)
    fig = plt.figure(figsize=(look.width_in, height), layout="constrained")
    ratios = top + [1] * strip_rows
    grid = fig.add_gridspec(len(ratios), columns * 3, height_ratios=ratios)
    if look.stacked:
        ax_values, ax_curve = fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, :])
    else:
        ax_values = fig.add_subplot(grid[0, : columns * 2])
        ax_curve = fig.add_subplot(grid[0, columns * 2 :])
    fingerprints = sorted(report["fingerprints"])
    colours = {fp: plt.cm.tab10(i % 10) for i, fp in enumerate(fingerprints)}
    _overview(ax_values, report, fingerprints, colours, look)
    _accumulation(ax_curve, report, look)
    for k, cluster in enumerate(strips):
        row, col = divmod(k, columns)
        ax = fig.add_subplot(grid[len(top) + row, col * 3 : col * 3 + 3])
        _strip(ax, cluster, report, fingerprints, colours, look)
    if look.title or title:
        fig.suptitle(title or figure_title(report), fontsize=look.pt(11))
    return fig


def figure_title(report: dict, width: int = 110) -> str:
    """What was measured, for a reader of the figure alone: model, endpoint (and where data
    detcheck did not measure came from), date, run, n; on lines that fit the figure."""
    import textwrap

    from detcheck.render.text import measured_line

    line = measured_line(report)
    return textwrap.fill(line, width, break_on_hyphens=False) if line else f"n = {report['n']:,}"


def _strip_clusters(clusters: list[dict]) -> list[dict]:
    """The clusters worth a close-up: those with more than one value (a single value has
    nothing to tell apart), the most-called first, at most MAX_STRIPS, shown in value order."""
    several = [c for c in clusters if len(c["values"]) > 1]
    chosen = sorted(several, key=lambda c: -c["count"])[:MAX_STRIPS]
    return sorted(chosen, key=lambda c: c["min_pct"])


def _overview(ax, report: dict, fingerprints: list[str], colours: dict, look: Look) -> None:
    """Every distinct value with its total count (a stem), its fingerprints' counts as dots,
    clusters shaded: the whole distribution at a glance."""
    for cluster in report["clusters"]:
        lo, hi = cluster["min_pct"], cluster["max_pct"]
        pad = max((hi - lo) * 0.05, 0.02)
        ax.axvspan(lo - pad, hi + pad, color="0.92", zorder=0)
    values = [v for c in report["clusters"] for v in c["values"]]
    xs = [v["prob_pct"] for v in values]
    ax.vlines(xs, 0.8, [v["count"] for v in values], color="0.25", linewidth=1, zorder=1)
    ax.scatter(
        xs, [v["count"] for v in values], s=14, color="0.1", zorder=3, label="all calls", marker="_"
    )
    if len(fingerprints) > 1:  # one fingerprint: its dots would only repeat the totals
        for fp in fingerprints:
            pts = [
                (v["prob_pct"], v["fingerprints"][fp]) for v in values if fp in v["fingerprints"]
            ]
            label = fp if fp != "null" else "unknown"  # no fingerprint sent
            ax.scatter(*zip(*pts), s=12, color=colours[fp], label=label, alpha=0.8, zorder=2)
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    ax.set_ylim(0.8, max(v["count"] for v in values) * 1.6 if values else 10)
    ax.set_xlabel(f"probability of {report['target']!r} (%)")
    ax.set_ylabel("calls returning the value (log)")
    ax.set_title(
        f"{count(report['distinct'], 'distinct value')} in {count(report['n'], 'call')}; "
        f"{count(len(report['clusters']), 'cluster')} at {report['threshold']:g} "
        f"{report['threshold_unit']}"
        " (shaded)",
        fontsize=look.pt(10),
    )
    ax.legend(fontsize=look.pt(8), loc="upper left")


def _strip(
    ax, cluster: dict, report: dict, fingerprints: list[str], colours: dict, look: Look
) -> None:
    """One cluster magnified: its values as offsets from its lowest (in 1e-6 pp), so values
    a few float32 steps apart, drawn on top of each other above, stand apart."""
    lo = cluster["min_pct"]
    values = cluster["values"]
    offsets = [(v["prob_pct"] - lo) * 1e6 for v in values]
    counts = [v["count"] for v in values]
    ax.vlines(offsets, 0, counts, color="0.25", linewidth=1.2)
    ax.scatter(offsets, counts, s=10, color="0.1", zorder=3)
    span = max(offsets) or 1.0
    ax.set_xlim(-0.08 * span, 1.08 * span)
    ax.set_ylim(0, max(counts) * 1.25)
    # two lines: six of these side by side, one line each ran into its neighbours
    ax.set_title(
        f"{lo:.6f}%\n{len(values)} values, {count(cluster['count'], 'call')}", fontsize=look.pt(8)
    )
    ax.set_xlabel(f"+ 1e-6 pp above {lo:.6f}%", fontsize=look.pt(7))
    ax.tick_params(labelsize=look.pt(7))


def _accumulation(ax, report: dict, look: Look) -> None:
    curve = report["accumulation"]
    ax.plot([p["calls"] for p in curve], [p["distinct"] for p in curve], marker="o", ms=3)
    unseen = report["unseen"]
    chao1 = unseen["chao1"]
    lo, hi = unseen.get("chao1_ci95") or (chao1, chao1)
    ax.axhline(chao1, linestyle="--", color="0.4", label=f"Chao1 = {chao1:,.1f}")
    if hi > lo:
        ax.axhspan(lo, hi, color="0.85", zorder=0, label=f"95% interval {lo:,.1f} to {hi:,.1f}")
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    ax.set_xlabel("calls")
    ax.set_ylabel("distinct values (expected)")
    ax.set_title("accumulation: more calls, more values?", fontsize=look.pt(10))
    ax.legend(fontsize=look.pt(8), loc="upper left")


def _plot_generation(plt, report: dict, title: str | None, look: Look):
    """Where paths part: responses still on the modal completion by position (splits marked),
    and the bit-distinct logprobs of its token there (drift before any flip)."""
    if report.get("prompts"):
        raise UsageError("plot takes the runs of one prompt (a prompt set has one run each)")
    positions = report["positions"]
    xs = [p["position"] for p in positions]
    width = 12.0 if look is FILE else look.width_in
    fig, (ax_path, ax_drift) = plt.subplots(2, 1, figsize=(width, 6.5), sharex=True)
    ax_path.step(xs, [p["responses"] for p in positions], where="post", color="tab:blue")
    for split in report["splits"]:
        ax_path.axvline(split["position"], color="tab:red", alpha=0.4)
        gap = split["top_gap_logprob"]
        if gap is not None:
            ax_path.annotate(
                f"gap {gap:.3g}", (split["position"], report["n"]), fontsize=look.pt(7)
            )
    ax_path.set_ylabel("responses on the modal path")
    if look.title or title:
        ax_path.set_title(title or figure_title(report), fontsize=look.pt(9))
    ax_drift.bar(xs, [p["distinct_logprobs"] for p in positions], color="tab:grey")
    ax_drift.set_ylabel("distinct logprobs of its token")
    ax_drift.set_xlabel("position (0-based)")
    fig.tight_layout()
    return fig
