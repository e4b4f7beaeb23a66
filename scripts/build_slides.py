#!/usr/bin/env python3
"""Build one reveal.js lecture deck per lecture notebook into slides/ (`make slides`).

    python scripts/build_slides.py                    # every notebooks/NN_*.ipynb
    python scripts/build_slides.py notebooks/04_xor.ipynb --out /some/dir

A deck is made of slides, not pages of the notebook. The rules (slides/README.md says
the same for authors):

- The ``#`` title slide shows the title and the first items of "What you will learn".
- Every ``##`` or ``###`` heading starts a new slide, also in the middle of a markdown
  cell. All slides are horizontal: right arrow visits every one in order. Sections called
  "Setup" or "Targets" stay in the notebook.
- Prose becomes speaker notes. On the slide stay the section's lead (the first short
  sentence of its first paragraphs), short display equations, small tables, and the lists
  of Recap, Exercises and "What you will learn" (first sentence of each item).
- Code stays in the notebook unless its cell is tagged ``slide-code``; then at most
  CODE_LINES lines of it are shown, without ``assert`` and ``NBVAL`` lines. Printed
  output goes to the notes, unless the cell is tagged ``slide-code`` or ``slide-output``.
  Progress bars and stderr never show.
- Each figure gets a slide of its own, as large as the slide allows, under the section's
  title and above its caption: the first sentence of the markdown that follows it, unless
  that speaks of the notebook's layout ("the cell above"; such a lead is not used either).
  An interactive widget becomes its stored still image and a note.
- Whatever does not fit the slide's height estimate continues on a next slide.

Other tags: ``notes`` (notes only) and ``slide-skip`` (nothing of the cell in the deck).

Decks use the outputs stored in the notebooks (nothing is executed), load reveal.js
and MathJax from local copies (slides/reveal.js/, slides/mathjax/, installed by
scripts/setup_env.py) and share slides/deck.css, which this script writes. The same
notebook always gives the same bytes, so the committed decks can be checked for
staleness (tests/test_slides.py); tests/test_browser.py checks that nothing runs off a
slide.
"""

from __future__ import annotations

import argparse
import base64
import html
import math
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NOTEBOOKS = ROOT / "notebooks"
SLIDES = ROOT / "slides"
REVEAL_PREFIX = "reveal.js"                   # local assets, relative to a deck in slides/
MATHJAX_SCRIPT = "mathjax/es5/tex-svg.js"
SHARED_CSS = "deck.css"                       # written by this script, shared by all decks

# Geometry of the 1280 x 720 slide, in slide pixels (deck.css is written from these).
SLIDE_W, SLIDE_H, PAD_X, PAD_Y = 1280, 720, 56, 30
CONTENT_W = SLIDE_W - 2 * PAD_X
TITLE_PX, H2_PX, LEAD_PX, BODY_PX, CODE_PX = 52, 40, 32, 28, 24
LINE = 1.3                                    # line height of everything
GAP = 18                                      # space between blocks
# The height estimates below err towards "does not fit"; this share of the slide is used.
BUDGET = int((SLIDE_H - 2 * PAD_Y) * 0.9)
CODE_COLS = int((CONTENT_W - 32) / (CODE_PX * 0.6))   # monospace characters per line
CODE_LINES = 12                               # lines of a tagged code cell on a slide
OUTPUT_LINES = 8                              # printed lines on a slide
MATH_GLYPHS = 70                              # a wider display formula stays in the notes
LEAD_WORDS, CAPTION_WORDS, ITEM_WORDS = 30, 40, 28
FIG_PAD_Y = 8                                 # a figure beside its title uses the whole height
SIDE_W = 340                                  # the title and caption column beside a tall figure
TITLE_ITEMS = 4                               # "What you will learn" items on the title slide

SKIPPED_SECTIONS = re.compile(r"^(\d+[a-z]?\s*·\s*)?(setup|targets?)\b", re.I)
LIST_SECTIONS = re.compile(r"^(\d+[a-z]?\s*·\s*)?(recap|summary|exercises?|what you will learn)\b", re.I)
# Sentences written for a reader of the notebook, not for a room.
READER_WORDS = re.compile(r"\bcells?\b|\b(printed|shown|table|plot|figure|output|line|list|code)s? (above|below)\b"
                          r"|\b(above|below)[:,]|\bscroll", re.I)
NOT_ON_SLIDES = re.compile(r"^\s*(#\s*NBVAL_\w+|assert\b|plt\.show\(\)|%)")
PROGRESS = re.compile(r"\d+%\|.*\||it/s\]|s/it\]")


# ------------------------------------------------------------------ markdown pieces

def cont(title: str) -> str:
    """The title of a slide that continues another."""
    return title.removesuffix(" (cont.)") + " (cont.)"


def inline(text: str) -> str:
    """Markdown of one paragraph as HTML, without the <p>."""
    return re.sub(r"^<p>|</p>$", "", md_html(text))


def md_html(text: str) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    out = markdown2html_mistune(text).strip()
    # Links between lectures point to the other decks (slides/ sits beside notebooks/).
    return re.sub(r'href="(\d\d[a-z]?_[^"/]+)\.ipynb([#"])', r'href="\1.slides.html\2', out)


LIST_ITEM = re.compile(r"^\s{0,3}([-*+]|\d{1,3}[.)])\s+")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def md_blocks(source: str) -> list[tuple[str, str]]:
    """Split markdown into ``(kind, text)`` blocks: heading, para, list, math, table or other."""
    lines, blocks, i = source.splitlines(), [], 0
    while i < len(lines):
        s = lines[i].strip()
        j = i + 1
        if not s:
            i += 1
            continue
        if HEADING.match(lines[i]):
            kind = "heading"
        elif s.startswith(("```", "~~~")):
            kind = "other"
            while j < len(lines) and not lines[j].strip().startswith(s[:3]):
                j += 1
            j += 1
        elif s.startswith("$$"):
            kind = "math"
            if s == "$$" or not s.endswith("$$"):
                while j < len(lines) and "$$" not in lines[j]:
                    j += 1
                j += 1
        else:
            kind = ("table" if s.startswith("|") else "list" if LIST_ITEM.match(lines[i])
                    else "other" if s.startswith("<") else "para")
            while j < len(lines):
                t = lines[j]
                if not t.strip():
                    # a blank line ends the block, unless a list goes on (another item, or an indented line)
                    if kind == "list" and j + 1 < len(lines) and lines[j + 1].strip() and (
                            LIST_ITEM.match(lines[j + 1]) or lines[j + 1][:1] in " \t"):
                        j += 1
                        continue
                    break
                if HEADING.match(t) or t.strip().startswith(("```", "$$")) or (kind == "para" and LIST_ITEM.match(t)):
                    break
                j += 1
        blocks.append((kind, "\n".join(lines[i:j]).strip("\n")))
        i = j
    return blocks


_PROTECT = re.compile(r"\$[^$]+\$|`[^`]+`|\([^()]*\)|\b(e\.g|i\.e|vs|cf|etc|approx|Fig|Eq)\.")


def first_sentence(text: str) -> str:
    """The first sentence of a paragraph (dots inside maths, code and brackets do not end it)."""
    flat = " ".join(text.split())
    masked = _PROTECT.sub(lambda m: "x" * len(m.group()), flat)
    m = re.search(r"[.!?](\s|$)", masked)
    return flat[:m.end()].strip() if m else flat


def words(text: str) -> int:
    return len(re.sub(r"\$[^$]+\$", "x", text).split())


def list_items(text: str) -> list[str]:
    items: list[str] = []
    for line in text.splitlines():
        if re.match(r"\s{0,2}([-*+]|\d+[.)])\s", line):
            items.append(line.strip())
        elif items:
            items[-1] += " " + line.strip()
    return [re.sub(r"^([-*+]|\d+[.)])\s+", "", item) for item in items]


def text_height(text: str, px: int, width: int = CONTENT_W) -> float:
    """Height of wrapped text, assuming wide characters (maths counts by its TeX length)."""
    chars_per_line = width / (px * 0.5)
    return math.ceil(max(len(text), 1) / chars_per_line) * px * LINE


# ------------------------------------------------------------------ slides

@dataclass
class Slide:
    title: str
    kind: str = "text"               # title, text or figure
    blocks: list[tuple[str, float]] = field(default_factory=list)   # (html, estimated height)
    notes: list[str] = field(default_factory=list)                  # markdown
    figure: tuple[str, int, int] | None = None                      # (data URI, width, height)
    caption: str = ""
    section: int = 0

    def used(self) -> float:
        head = text_height(self.title, TITLE_PX if self.kind == "title" else H2_PX) + GAP
        return head + sum(h + GAP for _, h in self.blocks)


class Deck:
    """Collects slides from a notebook's cells, in order."""

    def __init__(self):
        self.slides: list[Slide] = []
        self.skipping = False
        self.lead_tries = 0
        self.section = 0

    @property
    def current(self) -> Slide:
        return self.slides[-1]

    def heading(self, level: int, text: str) -> None:
        self.section += 1
        self.skipping = level > 1 and bool(SKIPPED_SECTIONS.match(text))
        if not self.skipping:
            self.slides.append(Slide(text, "title" if level == 1 else "text", section=self.section))
        # The lead: a short sentence from the first two paragraphs of a section.
        self.lead_tries = 2 if level > 1 and not LIST_SECTIONS.match(text) else 0

    def show(self, block_html: str, height: float) -> None:
        """Put a block on the current text slide, or on a new one when it does not fit."""
        cur = self.current
        if cur.kind == "title" and cur.used() + height + GAP > BUDGET:
            return                              # the title slide stays one slide; the rest is in its notes
        if cur.kind == "figure" or (cur.blocks and cur.used() + height + GAP > BUDGET):
            self.slides.append(Slide(cont(cur.title), section=cur.section))
        self.current.blocks.append((block_html, height))

    def note(self, text: str) -> None:
        if self.slides and text.strip():
            self.current.notes.append(text)

    # --- markdown

    def markdown(self, source: str, tags: set[str]) -> None:
        for kind, text in md_blocks(source):
            if kind == "heading":
                m = HEADING.match(text)
                self.heading(len(m.group(1)), m.group(2))
            elif not (self.skipping or "slide-skip" in tags or not self.slides):
                # All prose goes to the notes: of the slide it starts on, or of the slide after a figure.
                before = self.current
                if "notes" not in tags:
                    self.prose(kind, text)
                (self.current if before.kind == "figure" else before).notes.append(text)

    def prose(self, kind: str, text: str) -> None:
        """Put what a slide shows of a markdown block on it (see the module docstring)."""
        cur = self.current
        sentence = first_sentence(text) if kind == "para" else ""
        if kind == "para" and cur.kind == "figure" and not cur.caption:
            cur.caption = sentence if words(sentence) <= CAPTION_WORDS and not READER_WORDS.search(sentence) else ""
        elif kind == "para" and self.lead_tries > 0 and not cur.blocks:
            self.lead_tries -= 1
            if (words(sentence) <= LEAD_WORDS and sentence[-1:] in ".!?" and not READER_WORDS.search(sentence)):
                self.lead_tries = 0
                self.show(f'<p class="lead">{inline(sentence)}</p>', text_height(sentence, LEAD_PX))
        elif kind == "math" and cur.kind != "title" and math_glyphs(text) <= MATH_GLYPHS and "\\begin" not in text:
            self.show(f'<div class="math">{html.escape(text.strip(), quote=False)}</div>', 110)
        elif kind == "table" and len(text.splitlines()) <= 8 and max(map(len, text.splitlines())) <= 110:
            rows = [row for row in text.splitlines() if not re.match(r"^[\s|:-]+$", row)]   # not the --- rule
            self.show(md_html(text), sum(text_height(row, BODY_PX - 2) + 10 for row in rows))
        elif kind == "list" and (cur.kind == "title" or LIST_SECTIONS.match(cur.title)):
            for item in list_items(text)[:TITLE_ITEMS if cur.kind == "title" else None]:
                short = item if words(item) <= ITEM_WORDS else first_sentence(item)
                if words(short) <= ITEM_WORDS + 10:
                    self.show(f"<ul><li>{inline(short)}</li></ul>", text_height(short, BODY_PX, CONTENT_W - 40))

    # --- code

    def code(self, cell, widget_images: dict[str, list[str]]) -> None:
        tags = set(cell.metadata.get("tags", []))
        if self.skipping or "slide-skip" in tags or not self.slides:
            return
        printed = "\n".join(filter(None, (output_text(o) for o in cell.get("outputs", []))))
        if "slide-code" in tags:
            shown, hidden = code_lines(cell.source)
            self.show(f'<pre class="code">{highlight(shown)}</pre>', len(shown) * CODE_PX * LINE + 24)
            if hidden:
                self.note(f"Shown without {hidden} more lines; the whole cell is in the notebook.")
        if printed and ({"slide-code", "slide-output"} & tags):
            lines = wrapped(printed.splitlines())
            if len(lines) > OUTPUT_LINES:
                lines = lines[:OUTPUT_LINES - 1] + ["…"]
            self.show(f'<pre class="output">{html.escape(chr(10).join(lines))}</pre>',
                      len(lines) * CODE_PX * LINE + 24)
        elif printed:
            self.note("```text\n" + printed + "\n```")
        for out in cell.get("outputs", []):
            for uri in images(out, widget_images):
                width, height = image_size(uri)
                self.slides.append(Slide(self.current.title.removesuffix(" (cont.)"), "figure",
                                         figure=(uri, width, height), section=self.current.section))
                if "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
                    self.current.caption = "A still image of the interactive demo: it is live in the notebook."
                    self.note("Interactive in the notebook: move its sliders there to see the plot change.")


def output_text(out) -> str:
    """Printed text of one output, without stderr and progress bars."""
    if out.get("output_type") == "stream":
        if out.get("name") == "stderr":
            return ""
        text = out.get("text", "")
    elif "image/png" in out.get("data", {}) or "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
        return ""
    else:
        text = out.get("data", {}).get("text/plain", "")
    lines = [line.split("\r")[-1] for line in text.splitlines()]
    return "\n".join(line for line in lines if not PROGRESS.search(line)).strip("\n")


def wrapped(lines: list[str]) -> list[str]:
    """Lines broken to the width of a code block, at a space where possible, the rest indented."""
    out = []
    for line in lines:
        indent = min(len(line) - len(line.lstrip()) + 4, 24)
        while len(line) > CODE_COLS:
            cut = line.rfind(" ", indent + 1, CODE_COLS)
            cut = cut if cut > indent else CODE_COLS
            out.append(line[:cut].rstrip())
            line = " " * indent + line[cut:].lstrip()
        out.append(line)
    return out


def math_glyphs(tex: str) -> int:
    """Roughly how many symbols wide a formula is: a command counts as one."""
    return len(re.sub(r"\\[a-zA-Z]+", "x", re.sub(r"[{}_^$\s]|\\[,;!]", "", tex)))


def code_lines(source: str) -> tuple[list[str], int]:
    """The lines of a code cell a slide shows, at most CODE_LINES wrapped lines, and how many are left out."""
    kept, skip_open = [], 0
    for line in source.splitlines():
        if skip_open or NOT_ON_SLIDES.match(line):
            # an assert may continue over lines until its brackets close
            skip_open = max(skip_open + line.count("(") + line.count("[") - line.count(")") - line.count("]"), 0)
            continue
        kept.append(re.sub(r"\s*#\s*noqa.*$", "", line))
    kept = [line for i, line in enumerate(kept) if line.strip() or (i and kept[i - 1].strip())]   # one blank line
    while kept and not kept[-1].strip():
        kept.pop()
    lines = wrapped(kept)
    if len(lines) <= CODE_LINES:
        return lines, 0
    return lines[:CODE_LINES - 1] + ["# …"], len(lines) - CODE_LINES + 1


def highlight(lines: list[str]) -> str:
    from pygments import highlight as pyg
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer
    return pyg("\n".join(lines), PythonLexer(), HtmlFormatter(nowrap=True)).rstrip("\n")


def images(out, widget_images: dict[str, list[str]]) -> list[str]:
    data = out.get("data", {})
    if "image/png" in data:
        return ["data:image/png;base64," + data["image/png"].replace("\n", "")]
    view = data.get("application/vnd.jupyter.widget-view+json")
    return widget_images.get(view["model_id"], [])[:1] if view else []


def widget_stills(nb) -> dict[str, list[str]]:
    """For each stored widget: the images its output areas hold (the still of an interactive demo)."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})

    def found(model_id: str, seen: set[str]) -> list[str]:
        if model_id in seen or model_id not in state:
            return []
        seen.add(model_id)
        model = state[model_id]["state"]
        own = [uri for out in model.get("outputs", []) for uri in images(out, {})]
        refs = re.findall(r"IPY_MODEL_([0-9a-f]+)", repr(model))
        return own + [uri for ref in refs for uri in found(ref, seen)]

    return {model_id: found(model_id, set()) for model_id in state}


def image_size(uri: str) -> tuple[int, int]:
    png = base64.b64decode(uri.split(",", 1)[1][:64])
    return struct.unpack(">II", png[16:24])


# ------------------------------------------------------------------ HTML

def notes_html(slide: Slide) -> str:
    text = "\n\n".join(n for n in slide.notes if n.strip())
    return f'\n<aside class="notes">\n{md_html(text)}\n</aside>' if text else ""


def beside(width: int, height: int) -> bool:
    """Whether a figure is drawn wider beside its title and caption than under its title."""
    below = min(CONTENT_W, (SLIDE_H - 2 * PAD_Y - H2_PX * 1.2 - 2 * BODY_PX * LINE - 2 * GAP) * width / height)
    side = min(CONTENT_W - SIDE_W - GAP, (SLIDE_H - 2 * FIG_PAD_Y) * width / height)
    return side > below + 40


def slide_html(slide: Slide) -> str:
    title = inline(slide.title)
    if slide.kind == "figure":
        uri, width, height = slide.figure
        img = f'<img src="{uri}" alt="{html.escape(slide.caption or slide.title)}">'
        caption = f'<p class="caption">{inline(slide.caption)}</p>' if slide.caption else ""
        if beside(width, height):     # drawn at the slide's full height, its text right next to it
            img = img.replace("<img ", f'<img style="width: {(SLIDE_H - 2 * FIG_PAD_Y) * width // height}px" ')
        body = (f'{img}<div class="side"><h2>{title}</h2>{caption}</div>' if beside(width, height)
                else f"<h2>{title}</h2>{img}{caption}")
        cls = "figure beside" if beside(width, height) else "figure"
        return f'<section><div class="slide {cls}">{body}</div>{notes_html(slide)}</section>'
    tag = "h1" if slide.kind == "title" else "h2"
    blocks = "\n".join(h for h, _ in slide.blocks)
    return (f'<section><div class="slide {slide.kind}">\n<{tag}>{title}</{tag}>\n'
            f'{blocks}\n</div>{notes_html(slide)}</section>')


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{title}</title>
<link rel="stylesheet" href="{reveal}/dist/reset.css">
<link rel="stylesheet" href="{reveal}/dist/reveal.css">
<link rel="stylesheet" href="{reveal}/dist/theme/white.css">
<link rel="stylesheet" href="{css}">
<script>
window.MathJax = {{
  tex: {{inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']],
        processEscapes: true, processEnvironments: true}},
  svg: {{fontCache: 'local'}}
}};
</script>
<script src="{mathjax}" defer></script>
</head>
<body>
<div class="reveal"><div class="slides">
{slides}
</div></div>
<script src="{reveal}/dist/reveal.js"></script>
<script src="{reveal}/plugin/notes/notes.js"></script>
<script>
Reveal.initialize({{
  width: {w}, height: {h}, margin: 0.02, center: false, hash: true, transition: "none",
  navigationMode: "linear", controls: true, controlsLayout: "edges", progress: true,
  slideNumber: "c/t", plugins: [RevealNotes]
}});
</script>
</body>
</html>
"""

CSS = f"""/* The lecture decks' style sheet, written by scripts/build_slides.py: edit it there. */
.reveal .slides {{ text-align: left; }}
.reveal .slide {{ box-sizing: border-box; width: {SLIDE_W}px; height: {SLIDE_H}px; padding: {PAD_Y}px {PAD_X}px;
  display: flex; flex-direction: column; gap: {GAP}px; overflow: hidden; }}
.reveal .slide > * {{ margin: 0; flex: none; }}
.reveal, .reveal p, .reveal li, .reveal td, .reveal th {{ font-size: {BODY_PX}px; line-height: {LINE}; }}
.reveal h1, .reveal h2 {{ text-transform: none; line-height: 1.2; margin: 0; }}
.reveal h1 {{ font-size: {TITLE_PX}px; margin-top: 60px; }}
.reveal h2 {{ font-size: {H2_PX}px; }}
.reveal p.lead {{ font-size: {LEAD_PX}px; }}
.reveal ul {{ margin: 0 0 0 40px; display: block; }}
.reveal .slide > ul + ul {{ margin-top: -{GAP - 6}px; }}
.reveal .math {{ font-size: 30px; }}
.reveal .math mjx-container {{ margin: 0 !important; }}
.reveal mjx-container svg {{ max-width: 100%; height: auto; }}  /* a formula wider than the slide shrinks */
.reveal pre {{ box-sizing: border-box; width: 100%; margin: 0; padding: 12px 16px; box-shadow: none;
  font-size: {CODE_PX}px; line-height: {LINE}; white-space: pre-wrap; overflow-wrap: anywhere;
  font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; }}
.reveal pre.code {{ background: #f4f5f7; border-left: 4px solid #2a76dd; }}
.reveal pre.output {{ background: #fff; border-left: 4px solid #bbb; }}
.reveal table {{ border-collapse: collapse; margin: 0; }}
.reveal th, .reveal td {{ font-size: {BODY_PX - 2}px; padding: 4px 14px; border-bottom: 1px solid #ccc; }}
.reveal .figure img {{ flex: 1 1 auto; min-height: 0; min-width: 0; object-fit: contain; object-position: left top;
  margin: 0; max-width: 100%; max-height: none; border: 0; box-shadow: none; }}
.reveal .figure.beside {{ flex-direction: row; justify-content: center; padding-top: {FIG_PAD_Y}px; padding-bottom: {FIG_PAD_Y}px; }}
.reveal .figure.beside img {{ flex: 0 1 auto; }}
.reveal .figure.beside .side {{ width: {SIDE_W}px; flex: none; display: flex; flex-direction: column; gap: {GAP}px; }}
.reveal .slide-number {{ font-size: 16px; bottom: 8px; right: auto; left: 8px; }}
"""


def pygments_css() -> str:
    from pygments.formatters import HtmlFormatter
    return HtmlFormatter(style="default").get_style_defs(".reveal pre.code")


def lecture_notebooks() -> list[Path]:
    """The lecture notebooks: notebooks/NN_*.ipynb and NNb_*.ipynb (02b), in order."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]*_*.ipynb"))


def deck_name(notebook: Path) -> str:
    return notebook.stem + ".slides.html"


def deck_slides(nb) -> list[Slide]:
    """The slides of a notebook, by the rules of the module docstring."""
    deck, stills = Deck(), widget_stills(nb)
    for cell in nb.cells:
        tags = set(cell.metadata.get("tags", []))
        if cell.metadata.get("slideshow", {}).get("slide_type") in ("skip", "notes"):
            tags.add("slide-skip" if cell.metadata["slideshow"]["slide_type"] == "skip" else "notes")
        if cell.cell_type == "markdown":
            deck.markdown(cell.source, tags)
        elif cell.cell_type == "code":
            deck.code(cell, stills)
    # A section's heading slide with nothing on it gives its notes to the slide after it.
    kept = []
    for i, slide in enumerate(deck.slides):
        nxt = deck.slides[i + 1] if i + 1 < len(deck.slides) else None
        if slide.kind == "text" and not slide.blocks and nxt and nxt.section == slide.section:
            nxt.notes[:0] = slide.notes
        else:
            kept.append(slide)
    return kept


def build_deck(notebook: Path) -> str:
    """The HTML of one notebook's deck."""
    import nbformat
    nb = nbformat.read(notebook, as_version=4)
    slides = deck_slides(nb)
    title = slides[0].title if slides else notebook.stem
    text = PAGE.format(title=html.escape(re.sub(r"[*_`$]", "", title)), reveal=REVEAL_PREFIX, css=SHARED_CSS,
                       mathjax=MATHJAX_SCRIPT, w=SLIDE_W, h=SLIDE_H,
                       slides="\n".join(slide_html(s) for s in slides))
    return normalize(text)


def normalize(text: str) -> str:
    """One trailing newline and no trailing spaces: stable bytes, quiet diffs."""
    return "\n".join(line.rstrip() for line in text.splitlines()).strip() + "\n"


def write_if_changed(target: Path, text: str) -> None:
    from dlcourse.fsutil import atomic_write
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        atomic_write(target, text)
        print(f"[slides] wrote {target.name} ({len(text.encode()) // 1024} KiB)")
    else:
        print(f"[slides] {target.name} is up to date")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/NN_*.ipynb")
    parser.add_argument("--out", type=Path, default=SLIDES, help="output folder (default: slides/)")
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or lecture_notebooks()
    for nb in notebooks:
        write_if_changed(args.out / deck_name(nb), build_deck(nb))
    write_if_changed(args.out / SHARED_CSS, normalize(CSS + pygments_css()))
    if args.out.resolve() == SLIDES.resolve() and not (SLIDES / REVEAL_PREFIX / "dist" / "reveal.js").exists():
        print("[slides] note: slides/reveal.js/ is missing; run `make setup` (needs npm) to view the decks",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
