"""A verification as text and as a page: the verdict and why, the distance against the
reference's own variation, the floor, the prompts that moved most, and a figure of each prompt's
distance beside the reference's spread."""

from __future__ import annotations

import textwrap

MEANING = {
    "identical": "every answer the candidate gave is one the reference itself gave, bit for bit",
    "consistent": "the candidate's answers are not all the reference's own, but they differ no "
    "more than the reference's answers differ among themselves (alone and batched)",
    "differs": "the candidate's answers moved beyond the reference's own variation on more "
    "prompts than the reference does against itself: it is not serving the same model (or not "
    "the same weights, or not the same kernels)",
}


def _nats(value: float | None) -> str:
    if value is None:
        return "unknown"
    return "0" if value == 0 else f"{value:.3g}"


def headline(result: dict) -> str:
    v = result["verdict"]
    vocab = result.get("vocabulary") or {}
    if v == "differs" and vocab.get("other_family"):  # whatever the count says
        return f"{v}: another model family ({vocab['why']})"
    return f"{v}: {MEANING[v]}"


def lines_of(result: dict) -> list[str]:
    """What the verification found, a line each (the text and the page both use these)."""
    from detcheck.text import count

    settings = result["settings"]
    cand = settings["candidate"]
    ref = settings.get("reference") or {}
    stored = settings.get("reference_stored")
    ref_name = (f"the stored reference {stored}" if stored
                else f"{ref.get('model')} at {ref.get('base_url')}")  # fmt: skip
    calls = result.get("calls") or {}
    noise = result["reference_spread_nats"]
    out = [
        f"verify {cand['model']} at {cand['base_url']} against {ref_name}",
        headline(result),
        f"moved: {result['moved_prompts']} of {count(result['prompts'], 'prompt')} beyond the "
        f"reference's own variation; the reference against itself: "
        f"{result['reference_moved_against_itself']} (one-sided Fisher exact test, p = "
        f"{result['p_value']:.3g}, differs below {result['alpha'] / settings['rounds']:.3g} at "
        f"each of up to {settings['rounds']} looks)",
    ]
    anchors = len(next(iter(result["per_prompt"].values()), {}).get("anchors", [])) or 5
    said = (f"{result['distance_x_spread']:.3g} x the reference's own spread of {_nats(noise)}"
            if result.get("distance_x_spread") is not None
            else "the reference never varied (spread 0)")  # fmt: skip
    out.append(
        f"distance: {_nats(result['distance_nats'])} nats, {said} (the median over prompts of "
        f"each answer's distance to the nearest reference answer: the mean |difference| of "
        f"the top {anchors} logprobs)"
    )
    if result.get("top_token_agrees") is not None:
        out.append(f"top token: the same on {result['top_token_agrees']:.0%} of the prompts")
    floor, need = result.get("floor_nats"), result.get("floor_prompts")
    if need is None:
        out.append(f"floor: with {count(result['prompts'], 'prompt')} no difference could be "
                   "told apart from the reference's noise: give more prompts")  # fmt: skip
    elif floor == 0:
        out.append(f"floor: any difference on {need} prompts would have been told apart (the "
                   "reference never varied there)")  # fmt: skip
    else:
        out.append(
            f"floor: a move above {_nats(floor)} nats on every prompt would have been told "
            f"apart from the reference's noise ({need} prompts moved suffice)"
        )
    if result.get("left_out"):
        out.append(f"left out (no usable answer on one side): {', '.join(result['left_out'])}")
    vocab = result.get("vocabulary") or {}
    if vocab.get("other_family"):
        out.append(f"another model family: {vocab['why']}")
    moved = [p for p in result.get("most_moved") or [] if result["per_prompt"][p]["distance_nats"]]
    if moved:
        per = result["per_prompt"]
        shown = ", ".join(f"{p} ({_nats(per[p]['distance_nats'])})" for p in moved)
        out.append(f"moved most (nats): {shown}")
    out.append(
        f"calls: reference {calls.get('reference', 0):,}"
        + (f" (stored: {result['reference_calls_stored']:,} reused)" if stored else "")
        + f", candidate {calls.get('candidate', 0):,}; every answer is a run under "
        f"{result['out']}/<side>/<prompt>"
    )
    return out


def render(result: dict) -> str:
    # a path or URL is never broken (at a hyphen, or inside): it must copy whole
    return "\n".join(
        textwrap.fill(
            line, 80, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False
        )  # fmt: skip
        for line in lines_of(result)
    )


def html_page(result: dict, title: str | None = None) -> str:
    """The verification as one self-contained page, every text escaped."""
    import json
    from html import escape

    from detcheck.render.html import page

    lines = lines_of(result)
    heading = title or f"detcheck verify: {result['settings']['candidate']['model']}"
    per = result["per_prompt"]
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in (
            p, _nats(x["distance_nats"]), _nats(x["spread_nats"]), _nats(x["allowance_nats"]),
            "yes" if x["moved"] else "no", "yes" if x["identical"] else "no",
            f"{x['top_token']['reference']!r} / {x['top_token']['candidate']!r}",
        )) + "</tr>"
        for p, x in per.items()
    )  # fmt: skip
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "prompt",
            "distance (nats)",
            "reference spread",
            "allowed",
            "moved",
            "identical",
            "top token",
        )
    )
    drift = " drift" if result["verdict"] == "differs" else ""
    parts = [
        f"<h1>{escape(heading)}</h1>",
        f'<p class="headline{drift}">{escape(lines[1])}</p>',
        f"<p>{escape(lines[0])}</p>",
        '<ul class="lines">' + "".join(f"<li>{escape(x)}</li>" for x in lines[2:]) + "</ul>",
        _figure(result),
        f'<h2>Prompts</h2><div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>",
        "<h2>Raw data</h2><details><summary>The verification as JSON (what <code>--json</code> "
        f"prints)</summary><pre>{escape(json.dumps(result, indent=2))}</pre></details>",
    ]
    return page(heading, "\n".join(parts))


def _figure(result: dict) -> str:
    """Each prompt's distance beside what the reference's own spread allows (log scale)."""
    import math

    from detcheck.render.html import svg_of
    from detcheck.render.plot import plain_log_ticks, pyplot

    plt = pyplot()  # prompt ids are the user's text: never read as mathtext

    per = result["per_prompt"]
    names = list(per)
    if not names:
        return ""
    drawn = [per[p][k] for p in names for k in ("distance_nats", "allowance_nats")]
    positive = [v for v in drawn if v > 0]
    # a log axis has no zero: exact agreement (a distance or spread of 0) is drawn at its
    # bottom, a decade below the least value that is not
    floor = min(positive) / 10 if positive else 1e-9
    zero = len(positive) < len(drawn)

    def y(v: float) -> float:
        return max(v, floor)

    # drawn 960 px wide on the page (as plot.PAGE): 9.6 in at 72 pt/in is shown 1.39 times its
    # size, so 12 pt text is 16.7 px, as large as the page's own
    with plt.rc_context({"font.size": 12, "legend.fontsize": 12}):
        fig, ax = plt.subplots(figsize=(9.6, 4.6), layout="constrained")
        xs = list(range(len(names)))
        ax.scatter(xs, [y(per[p]["allowance_nats"]) for p in names], marker="_", s=240,
                   color="#777", label="allowed: the reference's own spread")  # fmt: skip
        ax.scatter(xs, [y(per[p]["distance_nats"]) for p in names], s=22,
                   color=["#c0392b" if per[p]["moved"] else "#2471a3" for p in names],
                   label="the candidate's distance (red: beyond)")  # fmt: skip
        ax.set_yscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels(names, rotation=60, ha="right")
        ax.set_ylabel("nats (bottom: 0)" if zero else "nats")
        top = max([y(per[p]["distance_nats"]) for p in names]
                  + [y(per[p]["allowance_nats"]) for p in names] + [floor * 10])  # fmt: skip
        ax.set_ylim(floor / 2 if zero else floor, 10 ** (math.ceil(math.log10(top)) + 0.5))
        plain_log_ticks(ax.yaxis)
        # above the axes: inside, it would cover the points at the top
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.01), ncol=2, frameon=False)
        svg = svg_of(fig)
        plt.close(fig)
    return (
        f'<h2>Each prompt</h2><figure><div class="scroll">{svg}</div><figcaption '
        'class="narrow">The figure is wider than this screen: scroll it sideways.</figcaption>'
        "</figure>"
    )
