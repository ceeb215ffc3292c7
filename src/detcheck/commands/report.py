"""`detcheck report`: the HTML page of stored runs; and compare's page (`compare --html`)."""

from __future__ import annotations

from pathlib import Path


def figure_svg(report: dict, title: str | None = None) -> str | None:
    """The report's figure as inline SVG, laid out for a page (its title is the page's); ""
    when there is nothing to draw (a prompt set, answers compared by their text only, a token
    that never came back); None without matplotlib (the page says so)."""
    from detcheck.errors import UsageError
    from detcheck.render.html import svg_of
    from detcheck.render.plot import PAGE, draw, pyplot

    if report.get("prompts"):  # a prompt set: the page's table is per prompt, no one figure
        return ""
    if report.get("kind") == "generate":
        if not report.get("positions"):
            return ""
    elif not report.get("distinct"):
        return ""
    try:
        plt = pyplot()
    except UsageError:
        return None
    fig = draw(report, look=PAGE)
    try:
        return svg_of(fig)
    finally:
        plt.close(fig)


def write_report_page(runs, report: dict, out: Path, title: str | None = None) -> Path:
    from detcheck.render.html import report_page
    from detcheck.store.files import _write_atomic

    if out.suffix.lower() not in (".html", ".htm"):
        from detcheck.errors import UsageError

        raise UsageError(f"-o must end in .html, got {out.name!r}")
    configs = [r.meta.get("config") or {} for r in runs]
    html = report_page(report, configs, figure_svg(report, title), title)
    _write_atomic(out, html.encode())
    return out


def write_compare_page(markdown: str, data: dict, out: Path, names: tuple[str, str]) -> Path:
    from detcheck.render.html import markdown_page
    from detcheck.store.files import _write_atomic

    title = f"detcheck compare: {names[1]} against {names[0]}"
    _write_atomic(out, markdown_page(markdown, data, title).encode())
    return out


def write_audit_page(audit_dir: Path, out: Path, title: str | None = None) -> Path:
    """An audit directory's page (its _audit.json, as `detcheck audit` wrote it)."""
    import json

    from detcheck.errors import DataError, UsageError
    from detcheck.render.audit import html_page
    from detcheck.store.files import _write_atomic

    if out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"-o must end in .html, got {out.name!r}")
    try:
        result = json.loads((audit_dir / "_audit.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{audit_dir}/_audit.json: cannot read it ({exc})") from None
    if not isinstance(result, dict) or result.get("status") != "complete":
        import shlex

        raise DataError(
            f"{audit_dir} is an audit that did not finish (killed, or stopped by an error): no "
            f"verdicts to show yet; finish it with: detcheck audit --resume "
            f"{shlex.quote(str(audit_dir))}"
        )
    _write_atomic(out, html_page(result, title).encode())
    return out


def write_verify_page(verify_dir: Path, out: Path, title: str | None = None) -> Path:
    """A verification directory's page (its _verify.json, as `detcheck verify` wrote it)."""
    import json

    from detcheck.errors import DataError, UsageError
    from detcheck.render.verify import html_page
    from detcheck.store.files import _write_atomic

    if out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"-o must end in .html, got {out.name!r}")
    try:
        result = json.loads((verify_dir / "_verify.json").read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{verify_dir}/_verify.json: cannot read it ({exc})") from None
    if not isinstance(result, dict) or result.get("status") != "complete":
        raise DataError(
            f"{verify_dir} is a verification that did not finish (killed, or stopped by an "
            "error): no verdict to show; its runs are kept, run `detcheck verify` again"
        )
    _write_atomic(out, html_page(result, title).encode())
    return out
