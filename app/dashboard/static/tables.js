// Sortable totals tables. Every cell is written with textContent: a name a
// tenant wrote is shown as it is and never read as HTML. A name has its
// colour (the one the charts give it) in a swatch before it.

import {money} from "./api.js";
import {swatch} from "./colours.js";

// `wide`: hidden on a narrow screen (dashboard.css), where the name, the
// counts and the cost are what fits; the tokens are in their chart and the CSV.
const NUMBERS = [
  {key: "total_calls", label: "Calls", kind: "count"},
  {key: "failed_calls", label: "Failed", kind: "count"},
  {key: "cost_usd", label: "Cost (USD)", kind: "money"},
  {key: "input_tokens", label: "Input tokens", kind: "count", wide: true},
  {key: "output_tokens", label: "Output tokens", kind: "count", wide: true},
];

export function columnsFor(name, label) {
  return [{key: name, label, kind: "text"}, ...NUMBERS];
}

// A breakdown item (by_operation / by_model) as a table row.
export function breakdownRow(name, item) {
  return {
    [name]: item[name], total_calls: item.total_calls, failed_calls: item.failed_calls,
    cost_usd: item.cost_usd, input_tokens: item.input_tokens_total, output_tokens: item.output_tokens_total,
  };
}

// A statistics object (a tenant, or the total) as a table row.
export function statsRow(name, stats, label) {
  return {
    [name]: label, total_calls: stats.total_calls, failed_calls: stats.failed_calls,
    cost_usd: stats.total_cost_usd, input_tokens: stats.input_tokens.total,
    output_tokens: stats.output_tokens.total,
  };
}

const COUNT = new Intl.NumberFormat("en-US");

function cellText(kind, value) {
  if (kind === "money") return money(value);
  if (kind === "count") return COUNT.format(value);
  return String(value);
}

function compare(kind, a, b) {
  if (kind === "text") return String(a).localeCompare(String(b));
  return Number(a) - Number(b);
}

const sorting = new WeakMap();  // table -> {key, descending}, kept across refreshes

function classes(column) {
  return [column.kind === "text" ? "" : "number", column.wide ? "wide" : ""].filter(Boolean).join(" ");
}

function cell(tag, column, text) {
  const element = document.createElement(tag);
  element.textContent = text;
  element.className = classes(column);
  return element;
}

// A body row's name cell starts with the name's colour; the footer's total
// has none. The two in a box of their own, so that a long name wraps beside
// its swatch rather than under it.
function nameCell(column, value) {
  const name = document.createElement("span");
  name.textContent = cellText(column.kind, value);
  const named = document.createElement("span");
  named.className = "named";
  named.append(swatch(value), name);
  const element = cell("td", column, "");
  element.append(named);
  return element;
}

// A row that lists its calls when clicked, or on Enter with the keyboard.
function drillable(tr, row, onRow) {
  if (!onRow) return;
  tr.className = "drill";
  tr.tabIndex = 0;
  tr.title = "List these calls";
  tr.addEventListener("click", () => onRow(row));
  tr.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    onRow(row);
  });
}

// Fill `table` with `rows` (and a `footer` row, e.g. the total), sorted by
// the column the user chose last (the API's order until then). `onRow(row)`:
// what a click on a row (the footer too) does.
export function renderTable(table, columns, rows, footer = null, onRow = null) {
  const sort = sorting.get(table);
  const shown = [...rows];
  if (sort) {
    const column = columns.find((c) => c.key === sort.key);
    shown.sort((a, b) => compare(column.kind, a[sort.key], b[sort.key]) * (sort.descending ? -1 : 1));
  }
  const head = document.createElement("thead");
  const headRow = head.insertRow();
  for (const column of columns) {
    const th = document.createElement("th");
    th.scope = "col";
    th.className = classes(column);
    const active = sort && sort.key === column.key;
    th.setAttribute("aria-sort", active ? (sort.descending ? "descending" : "ascending") : "none");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = column.label + (active ? (sort.descending ? " ▼" : " ▲") : "");
    button.addEventListener("click", () => {
      // Numbers sort largest first on the first click, names A to Z.
      const descending = active ? !sort.descending : column.kind !== "text";
      sorting.set(table, {key: column.key, descending});
      renderTable(table, columns, rows, footer, onRow);
      table.querySelector(`th:nth-child(${columns.indexOf(column) + 1}) button`).focus();
    });
    th.append(button);
    headRow.append(th);
  }
  const body = document.createElement("tbody");
  for (const row of shown) {
    const tr = body.insertRow();
    for (const column of columns) {
      const value = row[column.key];
      tr.append(column === columns[0] ? nameCell(column, value) : cell("td", column, cellText(column.kind, value)));
    }
    drillable(tr, row, onRow);
  }
  table.replaceChildren(head, body);
  if (footer) {
    const foot = table.createTFoot();
    const tr = foot.insertRow();
    for (const column of columns) tr.append(cell("td", column, cellText(column.kind, footer[column.key])));
    drillable(tr, {...footer, total: true}, onRow);
  }
}
