#!/usr/bin/env python3
"""Measure reveal.js decks in headless Chromium, slide by slide, as a presenter sees them.

    python scripts/deck_metrics.py                       # every slides/*.slides.html
    python scripts/deck_metrics.py slides/04_xor.slides.html --json metrics.json
    python scripts/deck_metrics.py --check                # exit 1 when a slide overflows (`make slides`)

For every slide: how far its content runs off the 1280 x 720 slide (down or right, in
slide pixels), whether it is mostly code (code input covers half of the content height
or more), its figures and the share of the slide width each one is drawn at, the
smallest body text and code font sizes, and whether it has speaker notes. Then the
right-arrow walk: the slides that pressing right arrow from the first slide visits,
in order. tests/test_browser.py runs the same measurement on every deck.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Overflow up to this many slide pixels is rounding, not content off the slide.
TOLERANCE_PX = 2

# One call per deck: waits for reveal.js, MathJax and the images, visits every slide with
# Reveal.slide() and measures it, then walks the deck with right-arrow key presses.
MEASURE = r"""
const done = arguments[arguments.length - 1];
const sleep = ms => new Promise(r => setTimeout(r, ms));
(async () => {
  for (let i = 0; !(window.Reveal && Reveal.isReady()); i++) {
    if (i > 600) return done({error: 'reveal.js did not start'});
    await sleep(50);
  }
  if (window.MathJax && MathJax.startup) await MathJax.startup.promise;
  await Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)));
  const scale = Reveal.getScale(), W = Reveal.getConfig().width, H = Reveal.getConfig().height;
  // Code input, as this course's decks and nbconvert's notebook pages mark it.
  const CODE = 'pre.code, .jp-CodeCell .jp-InputArea';
  const isNote = el => !!el.closest('aside.notes');
  const slides = Reveal.getSlides().map(s => {
    const ix = Reveal.getIndices(s);
    Reveal.slide(ix.h, ix.v);
    const box = s.getBoundingClientRect();
    const bottom = box.top + H * scale, right = box.left + W * scale;
    let down = 0, side = 0, top = Infinity, low = -Infinity;
    // every element on the slide; a formula counts as one box, the notes as none
    for (const el of s.querySelectorAll(':not(aside.notes, aside.notes *, mjx-container *)')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      down = Math.max(down, (r.bottom - bottom) / scale);
      side = Math.max(side, (r.right - right) / scale);
      top = Math.min(top, r.top); low = Math.max(low, r.bottom);
      const st = getComputedStyle(el);
      // content hidden in a box that scrolls (a long code line, a sub-slide that scrolls)
      if (/auto|scroll/.test(st.overflowX)) side = Math.max(side, el.scrollWidth - el.clientWidth);
      if (/auto|scroll/.test(st.overflowY)) down = Math.max(down, el.scrollHeight - el.clientHeight);
    }
    const codeEls = Array.from(s.querySelectorAll(CODE)).filter(el => !isNote(el) && !el.parentElement.closest(CODE));
    const code = codeEls.reduce((a, el) => a + el.getBoundingClientRect().height, 0);
    const content = low > top ? low - top : 0;
    const figures = Array.from(s.querySelectorAll('img')).filter(i => !isNote(i) && i.naturalWidth > 50).map(i => {
      const r = i.getBoundingClientRect();
      const drawn = Math.min(r.width, r.height * i.naturalWidth / i.naturalHeight);
      return {width: drawn / scale / W, height: Math.min(r.height, r.width * i.naturalHeight / i.naturalWidth) / scale / H};
    });
    const px = sel => Array.from(s.querySelectorAll(sel)).filter(el => !isNote(el) && el.textContent.trim())
                          .map(el => parseFloat(getComputedStyle(el).fontSize));
    const notes = s.querySelector('aside.notes');
    return {h: ix.h, v: ix.v || 0, title: (s.querySelector('h1, h2, h3') || {}).textContent || '',
            down: Math.round(down), side: Math.round(side),
            mostly_code: content > 0 && code >= 0.5 * content, figures,
            body_px: Math.min(...px('p, li'), 999), code_px: Math.min(...px('pre, pre code'), 999),
            notes: !!(notes && notes.textContent.trim())};
  });
  // The right-arrow walk, with the key events reveal.js listens to.
  Reveal.slide(0, 0, -1);
  const key = () => document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight', code: 'ArrowRight',
                                                                         keyCode: 39, which: 39, bubbles: true}));
  const walk = [];
  for (let i = 0; i < 4 * slides.length + 10; i++) {
    const ix = Reveal.getIndices();
    const last = walk[walk.length - 1];
    if (!last || last.h !== ix.h || last.v !== (ix.v || 0)) walk.push({h: ix.h, v: ix.v || 0});
    if (Reveal.isLastSlide() && !Reveal.availableFragments().next) break;
    key();
  }
  done({slides, walk, nested: document.querySelectorAll('.reveal .slides > section > section').length});
})().catch(e => done({error: String(e)}));
"""


def start_browser(profile: Path, window: tuple[int, int] = (1280, 800)):
    """A headless Chromium with an empty profile that never reaches the network (tests/test_browser.py too)."""
    os.environ["SE_OFFLINE"] = "true"   # Selenium must use the given driver, never download one
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={window[0]},{window[1]}", "--no-first-run", "--disable-sync", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_script_timeout(120)
    driver.set_page_load_timeout(60)
    return driver


def measure_deck(driver, deck: Path) -> dict:
    """Open one deck from disk and measure every slide (see MEASURE)."""
    driver.get(deck.resolve().as_uri())
    result = driver.execute_async_script(MEASURE)
    if "error" in result:
        raise RuntimeError(f"{deck.name}: {result['error']}")
    return result


def problems(result: dict) -> list[str]:
    """What a presenter could not show: overflowing slides and a right-arrow walk that skips or nests slides."""
    found = [f"slide {i + 1} ({s['title'].strip()[:60]!r}) runs {max(s['down'], s['side'])} px off the "
             f"{'bottom' if s['down'] >= s['side'] else 'right edge'}"
             for i, s in enumerate(result["slides"]) if max(s["down"], s["side"]) > TOLERANCE_PX]
    order = [(s["h"], s["v"]) for s in result["slides"]]
    walk = [(w["h"], w["v"]) for w in result["walk"]]
    if walk != order:
        missed = [i + 1 for i, o in enumerate(order) if o not in walk]
        found.append(f"right arrow does not visit every slide in order (skips slides {missed[:10]})")
    if result["nested"]:
        found.append(f"{result['nested']} slides are nested vertically")
    return found


def summary(result: dict) -> dict:
    slides = result["slides"]
    figures = [f for s in slides for f in s["figures"]]
    return {"slides": len(slides),
            "overflow": sum(max(s["down"], s["side"]) > TOLERANCE_PX for s in slides),
            "mostly_code": sum(s["mostly_code"] for s in slides),
            "figures": len(figures),
            "figures_under_half": sum(f["width"] < 0.5 for f in figures),
            "notes": sum(s["notes"] for s in slides),
            "right_arrow_visits": len(set((w["h"], w["v"]) for w in result["walk"])),
            "min_body_px": min(s["body_px"] for s in slides),
            "min_code_px": min(s["code_px"] for s in slides)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("decks", nargs="*", type=Path)
    parser.add_argument("--json", type=Path, help="also write every slide's measurements here")
    parser.add_argument("--check", action="store_true", help="fail when a slide overflows or navigation is not linear")
    args = parser.parse_args(argv)
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        print("[slides] Chromium and ChromeDriver are not installed: decks not measured", file=sys.stderr)
        return 1 if args.check else 0
    decks = args.decks or sorted((ROOT / "slides").glob("*.slides.html"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        driver = start_browser(Path(tmp) / "profile")
        try:
            for deck in decks:
                results[deck.name] = measure_deck(driver, deck)
        finally:
            driver.quit()
    keys = list(summary(next(iter(results.values()))))
    print("| deck | " + " | ".join(keys) + " |\n" + "|---" * (len(keys) + 1) + "|")
    for name, result in results.items():
        print(f"| {name.split('.')[0]} | " + " | ".join(str(v) for v in summary(result).values()) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    found = [f"{name}: {problem}" for name, result in results.items() for problem in problems(result)]
    print("\n".join(found) or "no slide overflows, and right arrow visits every slide in order")
    return 1 if args.check and found else 0


if __name__ == "__main__":
    sys.exit(main())
