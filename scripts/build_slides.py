#!/usr/bin/env python3
"""Build one reveal.js slide deck per lecture notebook into slides/ (`make slides`).

    python scripts/build_slides.py                    # every notebooks/NN_*.ipynb
    python scripts/build_slides.py notebooks/04_xor.ipynb --out /some/dir

- Uses the outputs stored in the notebooks: nothing is executed.
- A cell's own ``metadata.slideshow.slide_type`` is respected. Cells without one get
  a derived type: a markdown cell opening with a ``#`` or ``##`` heading starts a new
  slide, a ``###`` heading a new sub-slide (the vertical stack below a slide), and
  other cells are packed onto the current sub-slide until it is full, then start the
  next one. Long code cells scroll.
- Works offline: reveal.js and MathJax are loaded from local copies next to the
  decks (slides/reveal.js/ and slides/mathjax/, installed from the npm registry by
  scripts/setup_env.py and not committed). The template below removes every other
  script nbconvert would load from the network (jQuery, require.js, the widget
  manager, Mermaid).
- Deterministic: the same notebook always gives the same bytes, so the committed
  decks can be checked for staleness (tests/test_slides.py).
"""

from __future__ import annotations

import argparse
import copy
import logging
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SLIDES = ROOT / "slides"
# Paths of the local assets, relative to a deck in slides/.
REVEAL_PREFIX = "reveal.js"
MATHJAX_SCRIPT = "mathjax/es5/tex-svg.js"
# The notebook style sheets, shared by all decks (written by the build, committed).
SHARED_CSS = "notebook.css"

# How much fits on one sub-slide, in rough "lines" (see cell_weight).
SUBSLIDE_BUDGET = 22

TEMPLATE_NAME = "dlcourse_deck.html.j2"
TEMPLATE = r"""
{%- extends 'index.html.j2' -%}

{#- No jQuery, require.js or Mermaid from a CDN: the deck uses none of them. -#}
{%- block html_head_js -%}
{%- endblock html_head_js -%}

{#- The notebook style sheets are the same for every deck: build_deck moves them into
    slides/notebook.css, which all decks share. -#}
{% block notebook_css %}
<!-- notebook-css-begin -->
{{ super() }}
<!-- notebook-css-end -->
{% endblock notebook_css %}

{#- Widgets need a live kernel; the stored widget state is not rendered. -#}
{% block jupyter_widgets %}
{% endblock jupyter_widgets %}

{%- block html_head_js_mathjax -%}
<script>
window.MathJax = {
  tex: {
    inlineMath: [['$', '$'], ['\\(', '\\)']],
    displayMath: [['$$', '$$'], ['\\[', '\\]']],
    processEscapes: true,
    processEnvironments: true
  },
  svg: {fontCache: 'global'}
};
</script>
<script src="{{ resources.dlcourse.mathjax }}" defer></script>
<style type="text/css">
/* Every sub-slide fills the slide area and scrolls when its content is longer. */
.reveal .slides section > section {
    height: 100%;
    overflow-y: auto;
    text-align: left;
}
.reveal .slides section img {
    max-height: 520px;
    margin: 0.2em 0;
}
.reveal h1 { font-size: 1.8em; }
.reveal h2 { font-size: 1.4em; }
.reveal h3 { font-size: 1.15em; }
.reveal .jp-RenderedHTMLCommon p, .reveal .jp-RenderedHTMLCommon li { font-size: 20px; }
</style>
{%- endblock html_head_js_mathjax -%}

{% block footer_js %}
<script src="{{ reveal_url_prefix }}/dist/reveal.js"></script>
<script src="{{ reveal_url_prefix }}/plugin/notes/notes.js"></script>
<script>
Reveal.initialize({
    controls: true,
    progress: true,
    hash: true,
    center: false,
    transition: "{{ reveal_transition }}",
    slideNumber: "c/t",
    width: 1280,
    height: 720,
    plugins: [RevealNotes]
});
</script>
{% endblock footer_js %}
"""


def lecture_notebooks() -> list[Path]:
    """The lecture notebooks: notebooks/NN_*.ipynb and NNb_*.ipynb (02b), in order."""
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]*_*.ipynb"))


def deck_name(notebook: Path) -> str:
    return notebook.stem + ".slides.html"


def _heading_level(source: str) -> int:
    """Level of the markdown heading the cell opens with (0 when it does not)."""
    first = next((line for line in source.splitlines() if line.strip()), "")
    m = re.match(r"(#{1,6})\s", first)
    return len(m.group(1)) if m else 0


def cell_weight(cell) -> int:
    """A rough height of the cell on a slide, in lines of text."""
    lines = sum(1 + len(line) // 90 for line in cell.source.splitlines()) if cell.source.strip() else 0
    if cell.cell_type == "code":
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if any(k.startswith("image/") for k in data):
                lines += 16
            elif out.get("output_type") == "stream":
                lines += min(len(out.get("text", "").splitlines()), 12)
            elif "text/plain" in data or "text/html" in data:
                lines += 3
    return lines


def assign_slide_types(nb) -> None:
    """Give every cell without slide metadata a slide type (see the module docstring)."""
    used = 0
    for cell in nb.cells:
        own = cell.metadata.get("slideshow", {}).get("slide_type")
        weight = cell_weight(cell)
        if own:
            if own in ("slide", "subslide"):
                used = weight
            elif own not in ("skip", "notes"):
                used += weight
            continue
        level = _heading_level(cell.source) if cell.cell_type == "markdown" else 0
        if cell.cell_type == "raw" or not cell.source.strip():
            kind = "skip"
        elif level in (1, 2):
            kind = "slide"
        elif level == 3 or (used and used + weight > SUBSLIDE_BUDGET):
            kind = "subslide"
        else:
            kind = "-"
        if kind in ("slide", "subslide"):
            used = weight
        elif kind == "-":
            used += weight
        cell.metadata.setdefault("slideshow", {})["slide_type"] = kind


def _exporter():
    from jinja2 import DictLoader
    from nbconvert.exporters import SlidesExporter

    # nbconvert warns about every figure without alternative text; decks show plots as they are.
    log = logging.getLogger("dlcourse.slides")
    log.setLevel(logging.ERROR)
    exporter = SlidesExporter(
        log=log,
        extra_loaders=[DictLoader({TEMPLATE_NAME: TEMPLATE})],
        template_file=TEMPLATE_NAME,
        reveal_url_prefix=REVEAL_PREFIX,
        reveal_theme="white",
        reveal_transition="none",
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    return exporter


def _normalize(text: str) -> str:
    """One trailing newline and no trailing spaces: stable bytes, quiet diffs."""
    return "\n".join(line.rstrip() for line in text.splitlines()).strip() + "\n"


def split_shared_css(html: str) -> tuple[str, str]:
    """Move the notebook style sheets out of a deck: ``(html with a <link>, css)``."""
    m = re.search(r"<!-- notebook-css-begin -->(.*?)<!-- notebook-css-end -->", html, re.S)
    if not m:
        raise RuntimeError("the slide template lost its notebook-css markers")
    css = re.sub(r"</?style[^>]*>", "", m.group(1))
    link = f'<link rel="stylesheet" href="{SHARED_CSS}">'
    return html[:m.start()] + link + html[m.end():], _normalize(css)


def build_deck(notebook: Path, exporter=None) -> tuple[str, str]:
    """``(html, shared css)`` of the deck for one notebook (stored outputs, nothing executed)."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    nb = copy.deepcopy(nb)
    # The title comes from the notebook's first heading, e.g. "01 · Linear regression".
    title = next((c.source.splitlines()[0].lstrip("# ").strip() for c in nb.cells
                  if c.cell_type == "markdown" and _heading_level(c.source) == 1), notebook.stem)
    nb.metadata["title"] = title
    # The widget state is not rendered (no live kernel); leaving it out keeps decks small.
    nb.metadata.pop("widgets", None)
    assign_slide_types(nb)
    exporter = exporter or _exporter()
    resources = {"metadata": {"name": notebook.stem}, "dlcourse": {"mathjax": MATHJAX_SCRIPT}}
    html, _ = exporter.from_notebook_node(nb, resources=resources)
    # Links between lectures point to the other decks (slides/ sits beside notebooks/).
    html = re.sub(r'href="(\d\d[a-z]?_[^"/]+)\.ipynb([#"])', r'href="\1.slides.html\2', html)
    html, css = split_shared_css(html)
    return _normalize(html), css


def write_if_changed(target: Path, text: str) -> None:
    old = target.read_text(encoding="utf-8") if target.exists() else None
    if old != text:
        target.write_text(text, encoding="utf-8")
        print(f"[slides] wrote {target.name} ({len(text.encode()) // 1024} KiB)")
    else:
        print(f"[slides] {target.name} is up to date")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/NN_*.ipynb")
    parser.add_argument("--out", type=Path, default=SLIDES, help="output folder (default: slides/)")
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or lecture_notebooks()
    args.out.mkdir(parents=True, exist_ok=True)
    exporter = _exporter()
    shared = set()
    for nb in notebooks:
        html, css = build_deck(nb, exporter)
        shared.add(css)
        write_if_changed(args.out / deck_name(nb), html)
    if len(shared) > 1:
        raise RuntimeError("decks disagree on the shared notebook style sheet")
    if shared:
        write_if_changed(args.out / SHARED_CSS, shared.pop())
    if args.out.resolve() == SLIDES.resolve() and not (SLIDES / REVEAL_PREFIX / "dist" / "reveal.js").exists():
        print("[slides] note: slides/reveal.js/ is missing; run `make setup` (needs npm) to view the decks",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
