// The calls block: the stored calls behind a bucket or a table row (the
// call log, GET /v1/usage/calls or /v1/usage/all/calls), newest first, a
// page at a time: "More calls" reads the next page with the answer's
// next_cursor. A bucket (a bar or point of any chart) lists its calls of
// every group; a row of the operation, model or tenant table its calls
// over the whole window; either with the view's tenant.
//
// Every value is written with textContent: models, error classes and
// tenant ids are data that tenants wrote, never HTML.

import {ApiError, SignedOut, money} from "./api.js";
import {DIMENSION_NAMES} from "./charts.js";
import {isoUtc, timeText} from "./view.js";

const PAGE_SIZE = 50;
const $ = (selector) => document.querySelector(selector);
const COUNT = new Intl.NumberFormat("en-US");

let shown = null;  // {api, path, params, zone, everyTenant, cursor, ticket, onSignedOut}
let tickets = 0;   // the latest listing; answers of an older one are dropped
// The page's state: {api, view, everyTenant, series, window, signOut} (main.js).
let context = () => null;

// The calls behind a click: those of `span` ({from, to}, ISO), the view's
// tenant unless `filters` names one (null: every tenant), and `filters`.
function drill(span, filters, spanText) {
  const {api, view, everyTenant, signOut} = context();
  const params = {...span, ...filters};
  if (everyTenant && view.tenant && !("tenant_id" in filters)) params.tenant_id = view.tenant;
  const said = Object.entries(filters).filter(([name, value]) => name !== "tenant_id" && value !== null)
    .map(([name, value]) => `${DIMENSION_NAMES[name]} ${value}`);
  if (everyTenant) said.push(params.tenant_id ? `tenant ${params.tenant_id}` : "every tenant");
  said.push(`${spanText} (${view.tz})`);
  showCalls(api, {path: everyTenant ? "/v1/usage/all/calls" : "/v1/usage/calls", params, zone: view.tz,
    everyTenant, title: said.join(" · ")}, signOut);
}

// A table row: its calls over the whole window on screen.
export function callsOfWindow(filters) {
  const {window, view} = context();
  if (!window) return;
  drill({from: isoUtc(window.from), to: isoUtc(window.to)}, filters,
    `${timeText(window.from, view.tz)} – ${timeText(window.to, view.tz)}`);
}

// A chart's bar or point (plotly_click): the calls of its bucket.
export function callsOfBucket(event) {
  const {series, view} = context();
  const point = event.points && event.points[0];
  const bucket = point && series && series.buckets[point.pointIndex ?? point.pointNumber];
  if (!bucket) return;
  const text = (rfc3339) => timeText(Date.parse(rfc3339), view.tz);
  drill({from: bucket.start, to: bucket.end}, {}, `${text(bucket.start)} – ${text(bucket.end)}`);
}

// List the calls of `path` with `params` (window and filters): `title`
// says which. `onSignedOut(message)` when the key stops working.
async function showCalls(api, {path, params, title, zone, everyTenant}, onSignedOut) {
  shown = {api, path, params, zone, everyTenant, cursor: null, ticket: ++tickets, onSignedOut};
  const block = $("#calls-block");
  block.hidden = false;
  block.dataset.from = params.from;
  block.dataset.to = params.to;
  $("#calls-title-detail").textContent = title;
  $("#table-calls").replaceChildren(head(everyTenant), document.createElement("tbody"));
  await more();
  block.scrollIntoView({block: "nearest"});
}

export function clearCalls() {
  shown = null;
  tickets += 1;
  $("#calls-block").hidden = true;
  $("#table-calls").replaceChildren();
}

// The next page of the listing on screen.
async function more() {
  if (!shown) return;
  const listing = shown;
  const button = $("#calls-more");
  button.disabled = true;
  $("#calls-note").textContent = "Loading…";
  $("#calls-note").hidden = false;
  try {
    const params = {...listing.params, limit: PAGE_SIZE, ...(listing.cursor ? {cursor: listing.cursor} : {})};
    const page = (await listing.api.json(listing.path, params)).body;
    if (listing.ticket !== tickets) return;
    const body = $("#table-calls tbody");
    for (const call of page.calls) body.append(row(call, listing.zone, listing.everyTenant));
    listing.cursor = page.next_cursor;
    const count = body.rows.length;
    $("#calls-note").textContent = count === 0 ? "No calls." :
      `${COUNT.format(count)} call${count === 1 ? "" : "s"}${page.next_cursor ? ", newest first; more follow." : "."}`;
    button.hidden = !page.next_cursor;
  } catch (error) {
    if (listing.ticket !== tickets) return;
    if (error instanceof SignedOut) return listing.onSignedOut(error.message);
    if (!(error instanceof ApiError)) console.error(error);
    $("#calls-note").textContent = error.message;
  } finally {
    button.disabled = false;
  }
}

// `wide`: hidden on a narrow screen (dashboard.css), so that the cost stays in view.
const COLUMNS = [
  {label: "Time", number: false}, {label: "Tenant", number: false, tenants: true},
  {label: "Operation", number: false, wide: true}, {label: "Model", number: false}, {label: "Status", number: false},
  {label: "Duration (ms)", number: true, wide: true}, {label: "Input tokens", number: true, wide: true},
  {label: "Output tokens", number: true, wide: true}, {label: "Cost (USD)", number: true},
  {label: "Call id", number: false, wide: true},
];

function classes(column) {
  return [column.number ? "number" : "", column.wide ? "wide" : ""].filter(Boolean).join(" ");
}

function head(everyTenant) {
  const thead = document.createElement("thead");
  const tr = thead.insertRow();
  for (const column of COLUMNS) {
    if (column.tenants && !everyTenant) continue;
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = column.label;
    th.className = classes(column);
    tr.append(th);
  }
  return thead;
}

function row(call, zone, everyTenant) {
  const status = call.status === "ok" ? "ok" : `error: ${call.error_class}`;
  const values = [timeText(Date.parse(call.timestamp), zone, true), ...(everyTenant ? [call.tenant_id] : []),
    call.operation, call.model, status, COUNT.format(call.call_duration_ms), COUNT.format(call.input_tokens),
    COUNT.format(call.output_tokens), money(call.cost_usd), call.call_id];
  const tr = document.createElement("tr");
  const columns = COLUMNS.filter((column) => everyTenant || !column.tenants);
  values.forEach((value, index) => {
    const td = document.createElement("td");
    td.textContent = value;
    td.className = classes(columns[index]);
    tr.append(td);
  });
  return tr;
}

export function startCalls(state) {
  context = state;
  $("#calls-more").addEventListener("click", more);
  $("#calls-close").addEventListener("click", clearCalls);
}
