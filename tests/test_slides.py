"""slides/: one reveal.js deck per lecture notebook, up to date, and nothing loaded from the network."""

from __future__ import annotations

import importlib.util
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SLIDES = ROOT / "slides"
spec = importlib.util.spec_from_file_location("build_slides", ROOT / "scripts" / "build_slides.py")
build_slides = importlib.util.module_from_spec(spec)
sys.modules["build_slides"] = build_slides   # its dataclasses look their module up
spec.loader.exec_module(build_slides)

NOTEBOOKS = build_slides.lecture_notebooks()
DECKS = sorted(SLIDES.glob("*.slides.html"))
REMOTE = re.compile(r"^\s*(https?:)?//", re.I)


class _Refs(HTMLParser):
    """The src of every <script> and the href of every <link> in a page."""

    def __init__(self):
        super().__init__()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.refs.append((tag, attrs["src"]))
        elif tag == "link" and attrs.get("href"):
            self.refs.append((tag, attrs["href"]))


def script_and_style_refs(html: str) -> list[tuple[str, str]]:
    parser = _Refs()
    parser.feed(html)
    return parser.refs


def test_every_lecture_notebook_has_a_deck_and_every_deck_a_notebook():
    assert NOTEBOOKS, "no lecture notebooks found"
    decks = {d.name for d in DECKS}
    wanted = {build_slides.deck_name(nb) for nb in NOTEBOOKS}
    assert not wanted - decks, f"missing decks: {sorted(wanted - decks)}; run `make slides`"
    assert not decks - wanted, f"decks without a notebook: {sorted(decks - wanted)}; delete them"
    assert (SLIDES / build_slides.SHARED_CSS).is_file(), "slides/deck.css is missing; run `make slides`"


def test_every_deck_is_up_to_date(tmp_path):
    """Rebuilding from the notebooks gives exactly the committed bytes (builds are deterministic)."""
    build_slides.main(["--out", str(tmp_path)])
    stale = []
    for fresh in sorted(tmp_path.iterdir()):
        committed = SLIDES / fresh.name
        if not committed.exists() or committed.read_bytes() != fresh.read_bytes():
            stale.append(fresh.name)
    assert not stale, f"stale decks (the notebooks or the build changed): {stale}; run `make slides`"


@pytest.mark.parametrize("deck", DECKS, ids=lambda p: p.name)
def test_deck_loads_no_remote_script_or_stylesheet(deck):
    refs = script_and_style_refs(deck.read_text(encoding="utf-8"))
    remote = [ref for ref in refs if REMOTE.match(ref[1])]
    assert not remote, f"{deck.name} loads from the network: {remote}"
    sources = {src for tag, src in refs if tag == "script"}
    assert "reveal.js/dist/reveal.js" in sources, f"{deck.name} does not load the local reveal.js"
    # Relative references stay inside slides/ and, once `make setup` has unpacked the
    # assets, point at files that exist.
    for tag, ref in refs:
        if ref.startswith("data:"):
            continue
        target = (SLIDES / ref.split("#")[0].split("?")[0]).resolve()
        assert target.is_relative_to(SLIDES.resolve()), f"{deck.name}: {tag} {ref} leaves slides/"
        if (SLIDES / "reveal.js" / ".dlcourse-version").exists() and (SLIDES / "mathjax" / ".dlcourse-version").exists():
            assert target.is_file(), f"{deck.name}: {tag} {ref} does not exist"


def test_shared_stylesheet_imports_nothing_remote():
    css = (SLIDES / build_slides.SHARED_CSS).read_text(encoding="utf-8")
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", css, re.I)


def _notebook(*cells, widgets=None):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    if widgets:
        nb.metadata["widgets"] = widgets
    return nb


def _md(source, tags=()):
    import nbformat
    return nbformat.v4.new_markdown_cell(source, metadata={"tags": list(tags)})


def _code(source, outputs=(), tags=()):
    import nbformat
    return nbformat.v4.new_code_cell(source, outputs=list(outputs), metadata={"tags": list(tags)})


# A 1 x 1 PNG, and a 4 x 3 one (the builder reads a figure's size from its header).
def _png(width=4, height=3):
    import base64
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + b"\xff" * width * 3 for _ in range(height))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return base64.b64encode(png).decode()


def _figure(png=None):
    import nbformat
    return nbformat.v4.new_output("display_data", data={"image/png": png or _png(), "text/plain": "<Figure>"})


def _stream(text, name="stdout"):
    import nbformat
    return nbformat.v4.new_output("stream", name=name, text=text)


def test_headings_make_flat_slides_and_setup_stays_in_the_notebook():
    nb = _notebook(
        _md("# 01 · Title\n\nAn introduction for readers.\n\n**What you will learn**\n\n- one thing;\n- another."),
        _md("## Setup"), _code("import numpy as np"),
        _md("## 1 · First\n\nShort lead sentence.\n\n## 2 · Second, in the same cell\n\nAnother lead."),
        _md("### 2a · A sub-section\n\nText."),
        _md("## Targets\n\nThe course's own checks."),
        _md("## Recap\n\n- first point;\n- second point."))
    slides = build_slides.deck_slides(nb)
    assert [s.title for s in slides] == ["01 · Title", "1 · First", "2 · Second, in the same cell",
                                         "2a · A sub-section", "Recap"]
    title = build_slides.slide_html(slides[0])
    assert "<h1>" in title and "one thing" in title and "another" in title
    assert "introduction" not in title.split("<aside")[0] and "introduction" in title.split("<aside")[1]
    deck = "\n".join(build_slides.slide_html(s) for s in slides)
    assert "<section><section" not in deck and deck.count("<section>") == len(slides)
    assert "import numpy" not in deck and "course's own checks" not in deck


def test_prose_goes_to_the_notes_and_a_short_first_sentence_leads():
    long_paragraph = " ".join(["This sentence is long enough to be the speaker's, not the slide's"] * 3) + "."
    nb = _notebook(
        _md("## 1 · A section\n\nGradient descent steps against the gradient. It keeps going until "
            "the loss stops falling, which can take a while.\n\n" + long_paragraph + "\n\n$$L = w^2$$"),
        _md("## 2 · Another\n\n" + long_paragraph + "\n\nAs printed below, it converges. The cell above shows it."))
    first, second = (build_slides.slide_html(s) for s in build_slides.deck_slides(nb))
    shown, notes = first.split("<aside")
    assert '<p class="lead">Gradient descent steps against the gradient.</p>' in shown
    assert "keeps going" not in shown and "keeps going" in notes and "long enough" in notes
    assert "$$L = w^2$$" in shown
    # no lead from a long sentence, nor from one that speaks of the notebook's layout
    assert 'class="lead"' not in second.split("<aside")[0]


def test_code_stays_in_the_notebook_unless_tagged_and_is_capped():
    long_cell = "\n".join(f"x{i} = {i}" for i in range(40))
    tagged = ("# NBVAL_CHECK_OUTPUT\ndef step(w, lr):\n    return w - lr * grad(w)\n"
              "assert step(1.0, 0.1) < 1.0, (\n    'a message')\nw = step(1.0, 0.1)  # noqa: E402")
    nb = _notebook(
        _md("## 1 · Code"),
        _code("print('hidden')", [_stream("result 42\n"), _stream("warning\n", "stderr")]),
        _code(tagged, [_stream("step: 0%|          | 0/200 [00:00<?, ?it/s]\rstep: 100%|####| 200/200\n"
                               "w = 0.9\n")], tags=["slide-code"]),
        _code(long_cell, tags=["slide-code"]))
    deck = "\n".join(build_slides.slide_html(s) for s in build_slides.deck_slides(nb))
    shown = re.sub(r"<aside.*?</aside>", "", deck, flags=re.S)
    assert "hidden" not in shown and "result 42" in deck and "warning" not in deck
    assert "def" in shown and "step" in shown and "w = 0.9" in shown
    assert "NBVAL" not in shown and "assert" not in shown and "a message" not in shown and "noqa" not in shown
    assert "it/s" not in deck and "0%|" not in deck
    blocks = re.findall(r'<pre class="code">(.*?)</pre>', shown, re.S)
    assert len(blocks) == 2 and all(len(b.splitlines()) <= build_slides.CODE_LINES for b in blocks)
    assert "x39" not in shown and "more lines" in deck


def test_long_code_lines_are_broken_to_the_slide_width():
    line = "result = some_function(" + ", ".join(f"argument_{i}" for i in range(20)) + ")"
    lines = build_slides.wrapped([line])
    assert len(lines) > 1 and all(len(piece) <= build_slides.CODE_COLS for piece in lines)
    assert "".join(piece.strip() + " " for piece in lines).split() == line.split()


def test_each_figure_gets_a_slide_with_its_caption():
    nb = _notebook(
        _md("## 3 · Results\n\nTwo plots."),
        _code("plt.plot(x)\nplt.show()", [_figure(), _figure(_png(3, 4))]),
        _md("The loss falls tenfold in 20 steps. Then it flattens out, as the theory says it should."))
    slides = build_slides.deck_slides(nb)
    figures = [s for s in slides if s.kind == "figure"]
    assert len(figures) == 2 and all(s.title == "3 · Results" for s in figures)
    assert "plt.plot" not in "".join(build_slides.slide_html(s) for s in slides)
    html_ = build_slides.slide_html(figures[1])
    assert html_.count("<img") == 1 and '<p class="caption">The loss falls tenfold in 20 steps.</p>' in html_
    assert "flattens out" in html_.split("<aside")[1]
    assert "figure beside" in build_slides.slide_html(figures[1])      # a tall figure sits beside its title


def test_a_widget_becomes_its_still_image_and_a_note():
    state = {"state": {
        "a1": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_b2"]}},
        "b2": {"model_name": "OutputModel", "state": {"outputs": [_figure()]}}}}
    view = {"application/vnd.jupyter.widget-view+json": {"model_id": "a1", "version_major": 2, "version_minor": 0},
            "text/plain": "interactive(...)"}
    import nbformat
    nb = _notebook(_md("## Try it"), _code("interact(f)", [nbformat.v4.new_output("display_data", data=view)]),
                   widgets={"application/vnd.jupyter.widget-state+json": state})
    (still,) = [s for s in build_slides.deck_slides(nb) if s.kind == "figure"]
    html_ = build_slides.slide_html(still)
    assert "data:image/png" in html_ and "live in the notebook" in html_ and "<aside" in html_


def test_the_title_slide_keeps_to_its_budget():
    items = "\n".join(f"- item {i}: " + "a long phrase about what will be learned " * 3 for i in range(8))
    nb = _notebook(_md("# 09 · A very long title that takes two lines on the slide, or even more than that\n\n"
                       "**What you will learn**\n\n" + items))
    (title,) = build_slides.deck_slides(nb)
    assert title.kind == "title" and title.used() <= build_slides.BUDGET
    assert len(title.blocks) <= build_slides.TITLE_ITEMS


def test_deck_type_is_readable_from_the_back_of_the_room():
    assert build_slides.BODY_PX >= 28 and build_slides.CODE_PX >= 24
    css = (SLIDES / build_slides.SHARED_CSS).read_text(encoding="utf-8")
    sizes = [int(px) for px in re.findall(r"font-size:\s*(\d+)px", css)]
    assert sizes and min(sizes) >= 16  # 16 px: only the slide number; text and code are measured in test_browser


def _setup_env():
    spec = importlib.util.spec_from_file_location("setup_env", ROOT / "scripts" / "setup_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_web_assets_unpack_once_from_the_cache(tmp_path, monkeypatch, capsys):
    """scripts/setup_env.py unpacks the cached npm tarball once; later runs are silent no-ops."""
    import io
    import tarfile

    setup_env = _setup_env()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(setup_env, "WEB_ASSETS", {"reveal.js": "9.9.9"})
    cache = setup_env.npm_cache()
    cache.mkdir(parents=True)
    with tarfile.open(cache / "reveal.js-9.9.9.tgz", "w:gz") as tar:
        body = b"window.Reveal = {};\n"
        info = tarfile.TarInfo("package/dist/reveal.js")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    dest = tmp_path / "slides"
    setup_env.install_web_assets(dest)
    assert (dest / "reveal.js" / "dist" / "reveal.js").read_bytes() == body
    assert "unpacked into slides/reveal.js/" in capsys.readouterr().out
    setup_env.install_web_assets(dest)
    assert capsys.readouterr().out == ""


def test_web_assets_without_npm_say_what_to_install(tmp_path, monkeypatch, capsys):
    setup_env = _setup_env()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(setup_env.shutil, "which", lambda name: None)
    setup_env.install_web_assets(tmp_path / "slides")
    out = capsys.readouterr().out
    assert "npm not found" in out and not (tmp_path / "slides" / "reveal.js").exists()
