// The dashboard: sign-in, the controls, and one load of the view's answers.
//
// Everything comes from the public API with the pasted key: /v1/me decides
// the view (a key with the scope all:read sees every tenant, one with
// usage:read its own tenant), /v1/usage or /v1/usage/all the totals, the
// series routes the charts, the budgets routes the budgets block
// (budgets.js), the call log the calls behind a clicked bucket or table row
// (calls.js). A dashboard needs nothing more: a key that can also write
// calls or administer is accepted, with a warning.

import {Api, ApiError, SignedOut} from "./api.js";
import {clearBudgets, loadBudgets} from "./budgets.js";
import {callsOfBucket, callsOfWindow, clearCalls, startCalls} from "./calls.js";
import {DIMENSION_NAMES, drawCharts} from "./charts.js";
import {breakdownRow, columnsFor, renderTable, statsRow} from "./tables.js";
import {ViewError, browserZone, fieldText, fieldValue, isoUtc, localInput, readView, timeText, windowOf,
  writeView} from "./view.js";

const KEY_STORAGE = "usage-dashboard.api-key";
// The shape of every key the service issues (app/keys.py, KEY_PATTERN). Text
// of another shape (a key id, a cut-off paste, a password) is named for what
// it is instead of being sent and answered "unknown or revoked".
const KEY_SHAPE = /^usk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/;
const NOT_A_KEY = "That is not an API key: keys start with usk_, then 16 hexadecimal digits, an underscore " +
  "and a 43-character secret. Check that it was copied whole.";
const DAY = 24 * 3600 * 1000;
const AUTO_REFRESH_MS = 60 * 1000;
const $ = (selector) => document.querySelector(selector);
const charts = {cost: $("#chart-cost"), calls: $("#chart-calls"), duration: $("#chart-duration"),
  tokens: $("#chart-tokens")};

const READ_SCOPES = ["all:read", "usage:read"];
// Scopes a dashboard never needs, in the words of the warning it shows for them.
const WRITE_SCOPES = {"calls:write": "record calls (calls:write)",
  "admin": "administer tenants and keys (admin)"};

let api = null;
let me = null;
let everyTenant = false;  // the key has all:read: the all-tenants view
let view = readView(location.search);
let timer = null;
let loads = 0;         // the latest load; an older one that ends later is dropped
let drawn = null;      // the requests whose answers are on the page
let lastRequests = null;  // what the page shows, and with which percentiles,
let lastPercentiles = null;  // for the CSV downloads
let drawnSeries = null;  // the series on the charts and its window, for the
let drawnWindow = null;  // calls behind a click
let latestCall = null;   // an empty window's hint: the instant of the view's newest call

function showSignIn(message) {
  $("#view").hidden = true;
  $("#signed-in").hidden = true;
  $("#sign-in").hidden = false;
  $("#sign-in-error").textContent = message;
  $("#api-key").focus();
}

function showView() {
  everyTenant = me.scopes.includes("all:read");
  $("#who").textContent = `${me.tenant_id} · key “${me.name}” · ` +
    (everyTenant ? "every tenant" : "own tenant") + ` (${me.scopes.join(", ")})`;
  const extra = me.scopes.filter((scope) => scope in WRITE_SCOPES).map((scope) => WRITE_SCOPES[scope]);
  $("#key-warning").hidden = extra.length === 0;
  $("#key-warning-scopes").textContent = extra.join(" and ");
  const tenantOption = $('#group-by option[value="tenant_id"]');
  tenantOption.hidden = tenantOption.disabled = !everyTenant;
  if (!everyTenant && view.group_by === "tenant_id") view.group_by = "model";
  writeView(view);
  $("#tenant-control").hidden = !everyTenant;
  $("#tenants-block").hidden = !everyTenant;
  $("#sign-in").hidden = true;
  $("#signed-in").hidden = false;
  $("#view").hidden = false;
  viewToControls();
}

async function signIn(key) {
  const candidate = new Api(key);
  try {
    me = (await candidate.json("/v1/me")).body;
  } catch (error) {
    sessionStorage.removeItem(KEY_STORAGE);
    showSignIn(error.message);
    return;
  }
  if (!me.scopes.some((scope) => READ_SCOPES.includes(scope))) {
    sessionStorage.removeItem(KEY_STORAGE);
    showSignIn(`This key cannot read statistics (its scopes: ${me.scopes.join(", ")}): ` +
      "the dashboard needs a key with usage:read or all:read.");
    me = null;
    return;
  }
  api = candidate;
  sessionStorage.setItem(KEY_STORAGE, key);
  showView();
  setAutoRefresh();
  await load();
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY_STORAGE);
  api = me = drawn = null;
  loads += 1;
  clearInterval(timer);
  Object.values(charts).forEach((element) => {
    Plotly.purge(element);  // its click listener too
    delete element.dataset.drill;
  });
  document.querySelectorAll("table").forEach((table) => table.replaceChildren());
  clearBudgets();
  clearCalls();
  showSignIn(message);
}

function viewToControls() {
  for (const name of ["window", "bucket", "tz"]) $(`#${name}`).value = view[name];
  $("#from").value = fieldText(view.from);
  $("#to").value = fieldText(view.to);
  $("#group-by").value = view.group_by;
  $("#auto-refresh").checked = view.auto;
  setTenantOptions([], view.tenant);
  $("#custom-from").hidden = $("#custom-to").hidden = view.window !== "custom";
  $("#cost-dimension").textContent = DIMENSION_NAMES[view.group_by];
}

function controlsToView() {
  const next = {
    window: $("#window").value, from: fieldValue($("#from").value), to: fieldValue($("#to").value),
    bucket: $("#bucket").value,
    tz: $("#tz").value.trim() || browserZone(), group_by: $("#group-by").value, tenant: $("#tenant").value,
    auto: $("#auto-refresh").checked,
  };
  if (next.window === "custom" && view.window !== "custom" && !(next.from && next.to)) {
    try {  // start a custom window from the one on screen
      const shown = windowOf(view);
      next.from = localInput(shown.from, next.tz);
      next.to = localInput(shown.to, next.tz);
    } catch (error) {
      // an unknown zone: the load below says so
    }
  }
  return next;
}

function setTenantOptions(tenantIds, selected) {
  const select = $("#tenant");
  const ids = [...new Set([...tenantIds, ...(selected ? [selected] : [])])].sort();
  const options = ids.map((id) => {
    const option = document.createElement("option");
    option.value = option.textContent = id;
    return option;
  });
  select.replaceChildren(select.options[0], ...options);
  select.value = selected;
}

function requestsFor(window) {
  const span = {from: isoUtc(window.from), to: isoUtc(window.to)};
  const series = {...span, bucket: view.bucket, tz: view.tz};
  if (!everyTenant) {
    return {totals: ["/v1/usage", span], series: ["/v1/usage/series", series],
      grouped: ["/v1/usage/series", {...series, group_by: view.group_by}]};
  }
  const only = view.tenant ? {tenant_id: view.tenant} : {};
  return {totals: ["/v1/usage/all", span], series: ["/v1/usage/all/series", {...series, ...only}],
    grouped: ["/v1/usage/all/series", {...series, ...only, group_by: view.group_by}]};
}

async function fetchAll(requests, percentiles) {
  const names = Object.keys(requests);
  const answers = await Promise.all(names.map((name) =>
    api.json(requests[name][0], {...requests[name][1], percentiles})));
  return Object.fromEntries(names.map((name, index) => [name, answers[index]]));
}

// approximate first; exact when the service cannot answer it (503: the
// rollups were never rebuilt for calls stored before them).
async function fetchView(requests) {
  try {
    return {answers: await fetchAll(requests, "approximate"), fallback: null};
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 503) throw error;
    return {answers: await fetchAll(requests, "exact"), fallback: error.message};
  }
}

function percentilesNote(precision, fallback) {
  if (precision === "approximate") {
    return "p50 and p95 are approximate (percentiles=approximate): each within 1% of the exact value.";
  }
  return "p50 and p95 are exact: approximate percentiles are not available" +
    (fallback ? ` (the service says: ${fallback})` : "") + ".";
}

async function load() {
  if (!api) return;
  const ticket = ++loads;
  $("#error").hidden = true;
  // Alongside the window's requests; whatever happens to it stays in its block.
  const budgets = loadBudgets(api, {everyTenant, tenant: view.tenant}, () => ticket === loads);
  let requests;
  try {
    const window = windowOf(view);
    $("#window-shown").textContent =
      `From ${timeText(window.from, view.tz)} to ${timeText(window.to, view.tz)} (${view.tz}).`;
    $("#window-shown").dataset.from = isoUtc(window.from);
    $("#window-shown").dataset.to = isoUtc(window.to);
    requests = requestsFor(window);
    $("#status").textContent = "Loading…";
    const {answers, fallback} = await fetchView(requests);
    if (ticket !== loads) return;
    const key = JSON.stringify([requests, answers.series.body.percentiles]);
    const time = timeText(Date.now(), view.tz, true);
    if (key === drawn && Object.values(answers).every((answer) => answer.unchanged)) {
      $("#status").textContent = `Checked at ${time}: no change (304), nothing redrawn.`;
      return;
    }
    const empty = render(answers, fallback);
    if (empty) await showLatestCall(ticket);
    if (ticket !== loads) return;
    drawnSeries = answers.series.body;
    drawnWindow = window;
    drawn = key;
    lastRequests = requests;
    lastPercentiles = answers.series.body.percentiles;
    $("#status").textContent = `Updated at ${time}.`;
  } catch (error) {
    if (ticket !== loads) return;
    if (error instanceof SignedOut) {
      signOut(error.message);
      return;
    }
    if (!(error instanceof ApiError || error instanceof ViewError)) console.error(error);
    $("#status").textContent = "";
    $("#error").textContent = error.message;
    $("#error").hidden = false;
  } finally {
    await budgets;
    // Which load the page shows, for anyone waiting on it (the browser tests).
    if (ticket === loads) document.body.dataset.loads = String(ticket);
  }
}

function render(answers, fallback) {
  const totals = answers.totals.body;
  let stats = totals;  // whose breakdowns fill the operation and model tables
  if (everyTenant) {
    setTenantOptions(totals.tenants.map((tenant) => tenant.tenant_id), view.tenant);
    stats = view.tenant ? totals.tenants.find((tenant) => tenant.tenant_id === view.tenant) : totals.total;
    renderTable($("#table-tenants"), columnsFor("tenant_id", "Tenant"),
      totals.tenants.map((tenant) => statsRow("tenant_id", tenant, tenant.tenant_id)),
      statsRow("tenant_id", totals.total, "All tenants"),
      (row) => callsOfWindow({tenant_id: row.total ? null : row.tenant_id}));
  }
  const empty = !stats || stats.total_calls === 0;
  $("#empty").hidden = !empty;
  $("#empty-hint").hidden = true;
  $("#results").hidden = empty;
  if (empty) return true;
  drawCharts(charts, answers.series.body, answers.grouped.body, view.group_by);
  for (const element of Object.values(charts)) {
    if (element.dataset.drill) continue;
    element.on("plotly_click", callsOfBucket);
    element.dataset.drill = "1";
  }
  $("#percentiles-note").textContent = percentilesNote(answers.series.body.percentiles, fallback);
  renderTable($("#table-operations"), columnsFor("operation", "Operation"),
    stats.by_operation.map((item) => breakdownRow("operation", item)), null,
    (row) => callsOfWindow({operation: row.operation}));
  renderTable($("#table-models"), columnsFor("model", "Model"),
    stats.by_model.map((item) => breakdownRow("model", item)), null, (row) => callsOfWindow({model: row.model}));
  return false;
}

// An empty window: where the view's data is. One request, the call log's
// newest call of the view (newest first, limit=1, no window), and a button
// for the 30 days up to it; no walk over the calendar. If the request
// fails, the page says only that the window is empty.
async function showLatestCall(ticket) {
  const path = everyTenant ? "/v1/usage/all/calls" : "/v1/usage/calls";
  const only = everyTenant && view.tenant ? {tenant_id: view.tenant} : {};
  let calls;
  try {
    calls = (await api.json(path, {limit: 1, ...only})).body.calls;
  } catch (error) {
    if (error instanceof SignedOut) throw error;  // load() signs out
    if (!(error instanceof ApiError)) console.error(error);
    return;
  }
  if (ticket !== loads) return;
  latestCall = calls.length ? Date.parse(calls[0].timestamp) : null;
  $("#empty-latest").textContent = latestCall === null ? "No calls are stored for this view at all yet." :
    `The latest call is from ${timeText(latestCall, view.tz)}.`;
  $("#empty-show").hidden = latestCall === null;
  $("#empty-hint").hidden = false;
}

// The custom window of the 30 days that end with the latest call's day (in
// the view's zone), in days, or the bucket the view had if it was coarser.
function showBeforeLatest() {
  if (latestCall === null) return;
  const day = Date.parse(`${localInput(latestCall, view.tz).slice(0, 10)}T00:00:00Z`);  // its wall-clock day
  const wall = (ms) => new Date(ms).toISOString().slice(0, 16);
  view = {...view, window: "custom", from: wall(day + DAY - 30 * DAY), to: wall(day + DAY),
    bucket: view.bucket === "hour" ? "day" : view.bucket};
  clearCalls();
  writeView(view);
  viewToControls();
  load();
}

async function download(kind) {
  if (!lastRequests) return;
  const [path, params] = kind === "tenants" ? lastRequests.totals : lastRequests.grouped;
  const query = {...params, percentiles: lastPercentiles, ...(kind === "tenants" ? {} : {group_by: kind})};
  try {
    const {blob, filename} = await api.csv(path, query);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = filename;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) {
    if (error instanceof SignedOut) return signOut(error.message);
    $("#error").textContent = error.message;
    $("#error").hidden = false;
  }
}

function setAutoRefresh() {
  clearInterval(timer);
  timer = view.auto ? setInterval(() => document.hidden || load(), AUTO_REFRESH_MS) : null;
}

function changed() {
  clearCalls();  // it belonged to the view that was
  view = controlsToView();
  writeView(view);
  viewToControls();
  setAutoRefresh();
  load();
}

function start() {
  const zones = new Set([...(Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : []), "UTC"]);
  $("#time-zones").replaceChildren(...[...zones].sort().map((zone) => new Option(zone)));
  $("#sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("#api-key").value.trim();
    $("#api-key").value = "";
    if (KEY_SHAPE.test(key)) signIn(key);
    else showSignIn(NOT_A_KEY);  // not sent anywhere
  });
  $("#empty-show").addEventListener("click", showBeforeLatest);
  $("#sign-out").addEventListener("click", () => signOut(""));
  $("#controls").addEventListener("change", changed);
  $("#controls").addEventListener("submit", (event) => {
    event.preventDefault();
    changed();
  });
  document.querySelectorAll("button[data-csv]").forEach((button) =>
    button.addEventListener("click", () => download(button.dataset.csv)));
  // What a click on a bucket or a table row lists calls of (calls.js).
  startCalls(() => ({api, view, everyTenant, series: drawnSeries, window: drawnWindow, signOut}));
  writeView(view);
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) signIn(key);
  else showSignIn("");
}

start();
