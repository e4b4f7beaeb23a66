"""slides/: one reveal.js deck per lecture notebook, up to date, and nothing loaded from the network."""

from __future__ import annotations

import importlib.util
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SLIDES = ROOT / "slides"
spec = importlib.util.spec_from_file_location("build_slides", ROOT / "scripts" / "build_slides.py")
build_slides = importlib.util.module_from_spec(spec)
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
    assert (SLIDES / build_slides.SHARED_CSS).is_file(), "slides/notebook.css is missing; run `make slides`"


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


def test_derived_slide_types():
    """Headings start slides; long runs of cells are split into sub-slides."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 01 · Title\nintro"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("## A section"),
        nbformat.v4.new_code_cell("\n".join(f"line{i} = {i}" for i in range(30))),
        nbformat.v4.new_markdown_cell("### A sub-section"),
        nbformat.v4.new_markdown_cell("Some text."),
        nbformat.v4.new_markdown_cell("# Kept as written", metadata={"slideshow": {"slide_type": "fragment"}}),
    ]
    build_slides.assign_slide_types(nb)
    kinds = [c.metadata["slideshow"]["slide_type"] for c in nb.cells]
    assert kinds == ["slide", "-", "slide", "subslide", "subslide", "-", "fragment"]


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
