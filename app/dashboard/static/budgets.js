// The budgets block: each budget of the view, in its current period.
//
// A budget is always counted over its current day, ISO week or month on the
// calendar of its own zone, whatever the window controls say (the block's
// note says so). A key of one tenant reads GET /v1/budgets; a key for every
// tenant reads the selected tenant's GET /v1/tenants/{id}/budgets. With
// "All tenants" it reads none and asks for a tenant instead: no route
// answers every tenant's budgets at once, and the tenants the totals list
// are only those with calls in the window, so the block would change with
// the window (budgets do not) and miss a tenant whose budgets ran through
// earlier, all for up to 50 requests at each refresh.
//
// Every value is written with textContent: a budget's name and filters are
// data, never HTML. A failed request shows its message in the block only.

import {ApiError, SignedOut, money} from "./api.js";
import {timeText} from "./view.js";

const $ = (selector) => document.querySelector(selector);


// Which request answers the view's budgets (null: none, the note says why).
function pathFor(everyTenant, tenant) {
  if (!everyTenant) return "/v1/budgets";
  return tenant ? `/v1/tenants/${encodeURIComponent(tenant)}/budgets` : null;
}

// Read and show the view's budgets. Never throws: whatever goes wrong stays
// in the block. `current()` says whether this load is still the page's.
export async function loadBudgets(api, {everyTenant, tenant}, current) {
  const path = pathFor(everyTenant, tenant);
  let budgets = [];
  let note = "Choose a tenant to see its budgets.";
  if (path) {
    try {
      budgets = (await api.json(path)).body;
      note = budgets.length ? "" : "No budgets for this view.";
    } catch (error) {
      if (error instanceof SignedOut) return;  // the load's other requests sign out
      if (!(error instanceof ApiError)) console.error(error);
      note = error instanceof ApiError ? error.message : `The budgets could not be read (${error.message}).`;
    }
  }
  if (current()) showBudgets(budgets, note, everyTenant);
}

export function clearBudgets() {
  showBudgets([], "", false);
}

function showBudgets(budgets, note, everyTenant) {
  $("#budgets-note").textContent = note;
  $("#budgets-note").hidden = !note;
  const table = $("#table-budgets");
  table.hidden = budgets.length === 0;
  if (!budgets.length) {
    table.replaceChildren();
    return;
  }
  const head = document.createElement("thead");
  const headRow = head.insertRow();
  const labels = ["Budget", ...(everyTenant ? ["Tenant"] : []), "Period", "Spent (USD)", "Amount (USD)",
    "Used", "Projected (USD)", "Thresholds crossed"];
  for (const label of labels) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = label;
    if (label.includes("USD")) th.className = "number";
    if (label === "Tenant") th.className = "wide";
    headRow.append(th);
  }
  const body = document.createElement("tbody");
  for (const budget of budgets) body.append(budgetRow(budget, everyTenant));
  table.replaceChildren(head, body);
}

function budgetRow(budget, everyTenant) {
  const status = budget.status;
  const tr = document.createElement("tr");
  // A period is the budget's own day, week or month: shown in its zone, which
  // the cell names. Each end on one line: a narrow screen breaks between them.
  const inZone = (rfc3339, after = "") => {
    const end = document.createElement("span");
    end.className = "time";
    end.textContent = timeText(Date.parse(rfc3339), budget.tz) + after;
    return end;
  };
  const details = [budget.enforce ? "enforced" : "", budget.model === null ? "" : `model ${budget.model}`,
    budget.operation === null ? "" : `operation ${budget.operation}`].filter(Boolean);
  tr.append(
    cell(lines(budget.name, details.join(" · "))),
    // The selected tenant's, always: on a narrow screen it leaves its room to the spent column.
    ...(everyTenant ? [cell(budget.tenant_id, "wide")] : []),
    cell(lines(`${budget.period} in ${budget.tz}`, [inZone(status.period_start, " –"), " ", inZone(status.period_end)],
      "dates")),
    cell(money(status.spent_usd), "number"),
    cell(money(budget.amount_usd), "number"),
    cell(used(budget)),
    cell(money(status.projected_usd), "number"),
    cell(status.thresholds_crossed.length ? status.thresholds_crossed.map(percent).join(", ") : "none"),
  );
  return tr;
}

function percent(value) {
  return `${value}%`;
}

// A <meter> of spent against the amount (green until the first threshold,
// then yellow, red past the amount), and the percentage the API gives.
function used(budget) {
  const amount = Number(budget.amount_usd);
  const spent = Number(budget.status.spent_usd);
  const meter = document.createElement("meter");
  meter.min = 0;
  meter.max = Math.max(amount, spent);
  meter.optimum = 0;
  meter.low = Math.min(amount, amount * Number(budget.thresholds[0]) / 100);
  meter.high = amount;
  meter.value = spent;
  meter.title = `${money(budget.status.spent_usd)} of ${money(budget.amount_usd)} USD spent`;
  const text = document.createElement("span");
  text.textContent = percent(Number(budget.status.percent_used).toFixed(2));
  const both = document.createElement("span");
  both.className = "used";
  both.append(meter, text);
  return [both];
}

// A name with a quieter second line under it (when there is one): text, or
// a list of texts and elements.
function lines(first, second, secondClass = "") {
  const top = document.createElement("span");
  top.className = "line";
  top.textContent = first;
  if (!second) return [top];
  const bottom = document.createElement("span");
  bottom.className = `line detail ${secondClass}`.trim();
  if (Array.isArray(second)) bottom.append(...second);
  else bottom.textContent = second;
  return [top, bottom];
}

function cell(content, className = "") {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (typeof content === "string") td.textContent = content;
  else td.append(...content);
  return td;
}
