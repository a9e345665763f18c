// The view: what the controls say, kept in the URL query (never the key), so
// a view can be bookmarked and shared; and the window it means, as UTC
// instants computed on the calendar of the chosen time zone.

export const WINDOWS = {"24h": null, "7d": 7, "30d": 30, "90d": 90, custom: null};
export const BUCKETS = ["hour", "day", "week", "month"];
export const DIMENSIONS = ["operation", "model", "status", "error_class", "tenant_id"];
const LOCAL = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/;  // an end of a custom window, in the URL

export function browserZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

export function readView(search) {
  const query = new URLSearchParams(search);
  const pick = (name, allowed, fallback) => (allowed.includes(query.get(name)) ? query.get(name) : fallback);
  const local = (name) => (LOCAL.test(query.get(name) || "") ? query.get(name) : "");
  return {
    window: pick("window", Object.keys(WINDOWS), "30d"),
    from: local("from"),
    to: local("to"),
    bucket: pick("bucket", BUCKETS, "day"),
    tz: query.get("tz") || browserZone(),
    group_by: pick("group_by", DIMENSIONS, "model"),
    tenant: query.get("tenant") || "",
    auto: query.get("auto") === "1",
  };
}

export function writeView(view) {
  const query = new URLSearchParams();
  query.set("window", view.window);
  if (view.window === "custom") {
    query.set("from", view.from);
    query.set("to", view.to);
  }
  query.set("bucket", view.bucket);
  query.set("tz", view.tz);
  query.set("group_by", view.group_by);
  if (view.tenant) query.set("tenant", view.tenant);
  if (view.auto) query.set("auto", "1");
  history.replaceState(null, "", `${location.pathname}?${query}`);
}

export class ViewError extends Error {}

function wallClock(instant, zone) {
  // The zone's wall clock at `instant` (ms), as if it were UTC (ms).
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).formatToParts(new Date(instant));
  const part = (type) => Number(parts.find((p) => p.type === type).value);
  return Date.UTC(part("year"), part("month") - 1, part("day"), part("hour"), part("minute"), part("second"));
}

function instantOf(wall, zone) {
  // The instant whose wall clock in `zone` is `wall` (ms as if UTC). Twice,
  // for a wall time near an offset change; a wall time skipped by a DST jump
  // lands just after it.
  let instant = wall - (wallClock(wall, zone) - wall);
  instant = wall - (wallClock(instant, zone) - instant);
  return instant;
}

export function checkZone(zone) {
  try {
    new Intl.DateTimeFormat("en-US", {timeZone: zone});
  } catch (error) {
    throw new ViewError(`Unknown time zone "${zone}": use an IANA name such as Europe/Berlin.`);
  }
}

const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;

// [from, to) in ms. Presets end at the next whole hour (24 hours) or at the
// next local midnight (days, today included), so a window stays the same
// for an hour or a day and polling it is answered 304 while nothing changes.
export function windowOf(view, now = Date.now()) {
  checkZone(view.tz);
  if (view.window === "custom") {
    if (!view.from || !view.to) throw new ViewError("Choose both ends of the custom window.");
    if (!LOCAL.test(view.from) || !LOCAL.test(view.to)) {
      throw new ViewError("Write the ends of the custom window as 2026-11-01 00:00 (or 2026-11-01), " +
        "in the time zone.");
    }
    const from = instantOf(Date.parse(`${view.from}:00Z`), view.tz);
    const to = instantOf(Date.parse(`${view.to}:00Z`), view.tz);
    if (to <= from) throw new ViewError("The end of the window must be after its start.");
    return {from, to};
  }
  const wall = wallClock(now, view.tz);
  if (view.window === "24h") {
    const to = instantOf(Math.floor(wall / HOUR) * HOUR + HOUR, view.tz);
    return {from: to - DAY, to};
  }
  const tomorrow = Math.floor(wall / DAY) * DAY + DAY;
  return {
    from: instantOf(tomorrow - WINDOWS[view.window] * DAY, view.tz),
    to: instantOf(tomorrow, view.tz),
  };
}

export function isoUtc(instant) {
  return new Date(instant).toISOString().replace(".000Z", "Z");
}

// The page's one time format: "2026-11-22 14:00" on the wall clock of `zone`
// (to the second, "2026-11-22 14:00:07", for a single call or a moment).
// Every time the page writes goes through here; the zone is said once, by
// the window line (a budget's period, in its own zone, names that zone).
export function timeText(instant, zone, seconds = false) {
  return new Date(wallClock(instant, zone)).toISOString().slice(0, seconds ? 19 : 16).replace("T", " ");
}

// The same format for plotly's axis and hover labels (d3's notation): the
// charts' x values are already wall-clock times of the view's zone.
export const PLOTLY_TIME = "%Y-%m-%d %H:%M";

// An end of a custom window as the URL keeps it ("2026-11-01T00:00"): `instant` in `zone`.
export function localInput(instant, zone) {
  return new Date(wallClock(instant, zone)).toISOString().slice(0, 16);
}

// The From and To fields show an end in the page's time format ("2026-11-01 00:00")
// and read it back; a date alone means its midnight. Other text is kept as it
// is, for windowOf() to refuse with an example.
export function fieldText(local) {
  return local.replace("T", " ");
}

export function fieldValue(text) {
  const trimmed = text.trim().replace(/\s+/, " ");
  const match = /^(\d{4}-\d{2}-\d{2})(?:[ T](\d{2}:\d{2}))?$/.exec(trimmed);
  return match ? `${match[1]}T${match[2] || "00:00"}` : trimmed;
}
