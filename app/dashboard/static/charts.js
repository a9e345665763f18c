// The four charts, drawn with plotly.js (the global Plotly) from series answers.
//
// Plotly reads a little HTML in text it draws (<b>, <br>, <a href>, entities)
// in legends, hover labels and titles. Tenants write model names and error
// classes, so every name given to plotly goes through plotlyText(): with
// &, < and > escaped, plotly shows the name literally and parses no tag in it.

import {money} from "./api.js";
import {FIXED, colourOf} from "./colours.js";
import {PLOTLY_TIME} from "./view.js";

export function plotlyText(value) {
  return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export const DIMENSION_NAMES = {
  operation: "operation", model: "model", status: "status", error_class: "error class", tenant_id: "tenant",
};

// A group's label: its value, or what a null stands for (error_class of ok calls).
export function groupLabel(dimension, value) {
  if (value === null || value === undefined) return dimension === "error_class" ? "(no error)" : "(none)";
  return String(value);
}

// A bucket's start on the wall clock of the series' zone ("2026-11-02 00:00:00"),
// as plotly reads a date: the x axis shows local time, its labels in the
// page's time format (PLOTLY_TIME). The hour a DST change repeats gives two
// buckets at the same wall time, drawn on top of each other.
function wall(bucket) {
  return bucket.start.slice(0, 19).replace("T", " ");
}

// A fresh layout per draw: plotly writes into the objects it is given.
function layout(element, extra) {
  return {
    autosize: true,
    height: 300,
    margin: {l: 64, r: 16, t: 8, b: 40},
    hovermode: "x unified",
    legend: {orientation: "h", y: -0.2},
    // The page's time format; on the axis its date over its time, so that
    // the labels fit a phone's width without turning: a tick per 110 px at most.
    xaxis: {type: "date", tickformat: PLOTLY_TIME.replace(" ", "<br>"), hoverformat: PLOTLY_TIME,
      nticks: Math.max(2, Math.floor(element.clientWidth / 110)), automargin: true},
    font: {family: "system-ui, sans-serif", size: 12},
    ...extra,
  };
}
const CONFIG = {displayModeBar: false, responsive: true, displaylogo: false};

function draw(element, traces, extra) {
  Plotly.react(element, traces, layout(element, extra), CONFIG);
  element.dataset.draws = String(Number(element.dataset.draws || 0) + 1);
}

function costTraces(grouped, dimension) {
  const keys = new Map();  // label -> per-bucket exact cost text
  grouped.buckets.forEach((bucket, index) => {
    for (const group of bucket.groups) {
      const label = groupLabel(dimension, group[dimension]);
      if (!keys.has(label)) keys.set(label, new Array(grouped.buckets.length).fill(null));
      keys.get(label)[index] = money(group.total_cost_usd);
    }
  });
  const x = grouped.buckets.map(wall);
  return [...keys.entries()].map(([label, costs]) => ({
    type: "bar",
    name: plotlyText(label),
    marker: {color: colourOf(label)},  // the name's colour everywhere (colours.js)
    x,
    y: costs.map((cost) => (cost === null ? null : Number(cost))),  // null: not in the hover
    customdata: costs,
    hovertemplate: "$%{customdata}",
  }));
}

function only(bucket) {
  return bucket.groups[0];
}

function hasOkCalls(group) {
  return group.total_calls - group.failed_calls > 0;
}

export function drawCharts(elements, series, grouped, dimension) {
  const x = series.buckets.map(wall);
  const groups = series.buckets.map(only);
  draw(elements.cost, costTraces(grouped, dimension),
    {barmode: "stack", yaxis: {title: {text: "USD"}, tickformat: "$,.2f", rangemode: "tozero"}});
  draw(elements.calls, [
    {type: "bar", name: "calls", x, y: groups.map((g) => g.total_calls), hovertemplate: "%{y:,}",
      marker: {color: FIXED.calls}},
    {type: "bar", name: "failed calls", x, y: groups.map((g) => g.failed_calls), hovertemplate: "%{y:,}",
      marker: {color: FIXED.failed}},
  ], {barmode: "group", yaxis: {title: {text: "calls"}, rangemode: "tozero"}});
  // A bucket without ok calls has no durations: a gap, not a zero.
  const percentile = (name) => groups.map((g) => (hasOkCalls(g) ? g.call_duration[name] : null));
  draw(elements.duration, [
    {type: "scatter", mode: "lines+markers", name: "p50", x, y: percentile("p50"), hovertemplate: "%{y:,.2f} ms",
      line: {color: FIXED.p50, dash: "dot"}, marker: {color: FIXED.p50}},
    {type: "scatter", mode: "lines+markers", name: "p95", x, y: percentile("p95"), hovertemplate: "%{y:,.2f} ms",
      line: {color: FIXED.p95}, marker: {color: FIXED.p95}},
  ], {yaxis: {title: {text: "ms"}, rangemode: "tozero"}});
  draw(elements.tokens, [
    {type: "bar", name: "input tokens", x, y: groups.map((g) => g.input_tokens.total), hovertemplate: "%{y:,}",
      marker: {color: FIXED.input}},
    {type: "bar", name: "output tokens", x, y: groups.map((g) => g.output_tokens.total), hovertemplate: "%{y:,}",
      marker: {color: FIXED.output}},
  ], {barmode: "group", yaxis: {title: {text: "tokens"}, rangemode: "tozero"}});
}
