"""`detcheck plot`: the distinct values (coloured by fingerprint, cluster bands shaded) and the
accumulation curve, from a report dict. matplotlib is an optional extra."""

from __future__ import annotations

from pathlib import Path

from detcheck.errors import UsageError

INSTALL_HINT = (
    "plotting needs matplotlib: pip install 'detcheck[plot]' (in a checkout: uv sync --extra plot)"
)


def plot_report(report: dict, out: Path) -> Path:
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise UsageError(f"-o must end in .png, .svg or .pdf, got {out.name!r}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(INSTALL_HINT) from None

    if report.get("kind") == "generate":
        return _plot_generation(plt, report, out)
    fig, (ax_values, ax_curve) = plt.subplots(
        1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [2, 1]}
    )
    fingerprints = sorted(report["fingerprints"])
    colours = {fp: plt.cm.tab10(i % 10) for i, fp in enumerate(fingerprints)}
    for cluster in report["clusters"]:
        lo, hi = cluster["min_pct"], cluster["max_pct"]
        pad = max((hi - lo) * 0.05, 0.02)
        ax_values.axvspan(lo - pad, hi + pad, color="0.9", zorder=0)
    for fp in fingerprints:
        xs, ys = [], []
        for cluster in report["clusters"]:
            for value in cluster["values"]:
                if fp in value["fingerprints"]:
                    xs.append(value["prob_pct"])
                    ys.append(value["fingerprints"][fp])
        ax_values.scatter(xs, ys, s=22, color=colours[fp], label=fp, alpha=0.8, zorder=2)
    ax_values.set_yscale("log")
    ax_values.set_xlabel(f"probability of {report['target']!r} (%)")
    ax_values.set_ylabel("calls (log)")
    ax_values.set_title(
        f"{report['distinct']} distinct values in {report['n']:,} calls, "
        f"{len(report['clusters'])} clusters at {report['threshold']:g} " + report["threshold_unit"]
    )
    ax_values.legend(title="fingerprint", fontsize=8)

    curve = report["accumulation"]
    ax_curve.plot([p["calls"] for p in curve], [p["distinct"] for p in curve], marker="o")
    chao1 = report["unseen"]["chao1"]
    ax_curve.axhline(chao1, linestyle="--", color="0.5", label=f"Chao1 = {chao1:,.1f}")
    ax_curve.set_xscale("log")
    ax_curve.set_xlabel("calls")
    ax_curve.set_ylabel("distinct values (expected)")
    ax_curve.set_title("accumulation")
    ax_curve.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _plot_generation(plt, report: dict, out: Path) -> Path:
    """Where paths part: responses still on the modal completion by position (splits marked),
    and the bit-distinct logprobs of its token there (drift before any flip)."""
    if report.get("prompts"):
        raise UsageError("plot takes the runs of one prompt (a prompt set has one run each)")
    positions = report["positions"]
    xs = [p["position"] for p in positions]
    fig, (ax_path, ax_drift) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    ax_path.step(xs, [p["responses"] for p in positions], where="post", color="tab:blue")
    for split in report["splits"]:
        ax_path.axvline(split["position"], color="tab:red", alpha=0.4)
        gap = split["top_gap_logprob"]
        if gap is not None:
            ax_path.annotate(f"gap {gap:.3g}", (split["position"], report["n"]), fontsize=7)
    ax_path.set_ylabel("responses on the modal path")
    ax_path.set_title(report["headline"][:120], fontsize=9)
    ax_drift.bar(xs, [p["distinct_logprobs"] for p in positions], color="tab:grey")
    ax_drift.set_ylabel("distinct logprobs of its token")
    ax_drift.set_xlabel("position (0-based)")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
