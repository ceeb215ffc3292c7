// What tests/test_browser.py measures on a page, at the size it was opened at: elements wider
// than the screen, clipped cells, each figure (does it scroll, say so, and how large is its
// smallest text), the audit's verdicts, null where 'unknown' belongs, <pre> outside the JSON.
(() => {
  const vw = document.documentElement.clientWidth;
  const bodyPx = parseFloat(getComputedStyle(document.body).fontSize);
  const shown = el => { const r = el.getBoundingClientRect(); return r.width > 0 || r.height > 0; };
  const hidden = el => el.closest("details:not([open])") && !el.matches("details, summary");
  const name = el => el.tagName.toLowerCase() + (el.className ? "." + el.className : "") + ": " +
    (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 60);
  const out = {viewport: innerWidth, visible: vw, page_width: document.documentElement.scrollWidth,
               body_px: bodyPx,
               wide: [], clipped: [], small_text: [], figures: [], verdicts: [], pre: 0};
  for (const el of document.body.querySelectorAll("*")) {
    if (hidden(el) || !shown(el) || el.closest("figure")) continue;
    const r = el.getBoundingClientRect();
    if (r.right > vw + 0.5 || r.left < -0.5) out.wide.push(name(el));
    const overflow = getComputedStyle(el).overflowX;
    if (overflow !== "visible" && el.scrollWidth > el.clientWidth + 1) out.wide.push("scrolls " + name(el));
  }
  for (const cell of document.querySelectorAll("td, th")) {
    if (hidden(cell) || !shown(cell)) continue;
    const r = cell.getBoundingClientRect();
    if (cell.scrollWidth > cell.clientWidth + 1 || r.right > vw + 0.5) out.clipped.push(name(cell));
  }
  for (const fig of document.querySelectorAll("figure")) {
    const box = fig.querySelector(".scroll") || fig;
    const caption = fig.querySelector("figcaption");
    const says = caption && getComputedStyle(caption).display !== "none" && /scroll/.test(caption.textContent);
    const texts = [...fig.querySelectorAll("svg text")];
    const scale = t => { const m = t.getScreenCTM(); return Math.hypot(m.a, m.b); };  // rotated too
    const sizes = texts.map(t => parseFloat(getComputedStyle(t).fontSize) * scale(t));
    out.figures.push({scrolls: box.scrollWidth > box.clientWidth + 1, says_it_scrolls: !!says,
                      texts: texts.length, marks: fig.querySelectorAll("svg path, svg use").length,
                      smallest_text_px: sizes.length ? Math.min(...sizes) : null});
  }
  for (const v of document.querySelectorAll(".verdict")) {
    const r = v.getBoundingClientRect();
    out.verdicts.push({text: v.textContent.trim(), on_screen: r.left >= 0 && r.right <= vw + 0.5});
  }
  const read = [...document.body.children].filter(e => e.tagName !== "DETAILS").map(e => e.innerText).join("\n");
  out.nulls = read.match(/\b(null|None|NaN|undefined)\b/g) || [];
  out.pre = [...document.querySelectorAll("pre")].filter(p => !p.closest("details")).length;
  return JSON.stringify(out);
})()
