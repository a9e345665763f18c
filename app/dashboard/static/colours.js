// One colour per name (a model, operation, tenant, status or error class),
// the same in every chart and table and after a reload: the colour is a
// hash of the name into a fixed palette, so it depends on nothing but the
// name (not on which other names a view has, nor on their order). Twelve
// colours are easy to tell apart; the price is that two names can share
// one (a hash, not an allocation), which the legend and tables then tell
// apart by their text.

// Tableau's palette without its red (the failed calls' colour) and grey
// (the totals'), with four lighter or darker companions.
export const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948", "#76b7b2",
  "#9c755f", "#d37295", "#a0cbe8", "#8cd17d", "#499894", "#ffbe7d"];

// The colours of the series that are not names (calls, failed calls,
// percentiles, tokens): outside the palette, so none looks like a model's.
export const FIXED = {calls: "#5b6778", failed: "#c0392b", p50: "#5b6778", p95: "#1d2533",
  input: "#5b6778", output: "#a9b1bd"};

// FNV-1a (32 bits) of the name's UTF-8 bytes: small, fast and well spread.
function hash(text) {
  let value = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    value = Math.imul(value ^ byte, 0x01000193) >>> 0;
  }
  return value;
}

export function colourOf(name) {
  return PALETTE[hash(String(name)) % PALETTE.length];
}

// A small square of the name's colour, for a table's name cell. Set through
// the CSSOM (element.style), which the page's style-src 'self' allows, not
// a style attribute written as text.
export function swatch(name) {
  const element = document.createElement("span");
  element.className = "swatch";
  element.setAttribute("aria-hidden", "true");
  element.style.backgroundColor = colourOf(name);
  return element;
}
