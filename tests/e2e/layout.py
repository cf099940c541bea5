"""Layout checks run in the browser against the page as drawn: no element sticks out of its card,
no page scrolls sideways, and no visible text is drawn smaller than 11 px (SVG text counts at the
size it is drawn, after the picture's scaling)."""
from __future__ import annotations

from playwright.sync_api import Page

MIN_TEXT_PX = 11.0

# Every visible element inside a card must lie within the card's box, horizontally; an element
# inside a scrolling box is checked against that box instead (scrolling is how it is meant to fit),
# and the scrolling box itself against the card. Vertical overflow of a card cannot happen without
# the card growing, except inside scrolling boxes, which are meant for it.
_OVERFLOWS = """
(slack) => {
  const found = [];
  const scrolls = (el) => { const s = getComputedStyle(el); return ['auto', 'scroll', 'hidden'].includes(s.overflowX); };
  for (const card of document.querySelectorAll('.card')) {
    if (!card.checkVisibility()) continue;
    for (const el of card.querySelectorAll('*')) {
      if (!el.checkVisibility() || el.closest('.visually-hidden') || el.closest('title')) continue;
      let box = card;
      for (let up = el.parentElement; up && up !== card; up = up.parentElement) {
        if (up instanceof HTMLElement && scrolls(up)) { box = up; break; }
      }
      const r = el.getBoundingClientRect(), b = box.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.left < b.left - slack || r.right > b.right + slack) {
        const what = `${el.tagName.toLowerCase()}.${el.getAttribute('class') || ''}`;
        const where = box === card ? 'card' : 'scroll box';
        found.push(`${what} [${Math.round(r.left)}, ${Math.round(r.right)}] outside ${where} ${box.className}`
                   + ` [${Math.round(b.left)}, ${Math.round(b.right)}] text "${(el.textContent || '').trim().slice(0, 30)}"`);
      }
    }
  }
  return found;
}
"""

_SMALL_TEXT = """
(minimum) => {
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || !node.textContent.trim() || el.closest('title, script, style, .visually-hidden')) continue;
    if (!el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) continue;
    let size = parseFloat(getComputedStyle(el).fontSize);
    if (el instanceof SVGElement) {
      const ctm = el.getScreenCTM();
      if (ctm) size *= Math.hypot(ctm.a, ctm.b);
    }
    if (size < minimum - 0.05) {
      const what = `${el.tagName.toLowerCase()}.${el.getAttribute('class') || ''}`;
      found.push(`${size.toFixed(1)}px: ${what} "${node.textContent.trim().slice(0, 30)}"`);
    }
  }
  return found;
}
"""


def assert_fits(page: Page) -> None:
    """Nothing overflows its card, and the page does not scroll sideways."""
    outside = page.evaluate(_OVERFLOWS, 1.0)
    assert not outside, "elements overflow their card:\n" + "\n".join(outside[:15])
    viewport = page.viewport_size or {"width": 0}
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"], "the page scrolls sideways"


def assert_text_readable(page: Page) -> None:
    small = page.evaluate(_SMALL_TEXT, MIN_TEXT_PX)
    assert not small, f"text under {MIN_TEXT_PX:g} px:\n" + "\n".join(small[:15])


def assert_laid_out(page: Page) -> None:
    assert_fits(page)
    assert_text_readable(page)
