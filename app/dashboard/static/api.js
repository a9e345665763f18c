// Calls to the service's public API with the key the user pasted.
//
// The key travels only in the X-API-Key header of same-origin requests
// (never in a URL, a cookie or a log). Each JSON answer is remembered with
// its ETag and the next request for the same URL sends If-None-Match: a 304
// gives the remembered answer back, marked unchanged, and costs no redraw.

export class SignedOut extends Error {}  // 401: the key is unknown or revoked

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const MONEY = new Set(["total_cost_usd", "cost_usd",  // statistics
  "amount_usd", "spent_usd", "remaining_usd", "projected_usd"]);  // budgets

// Money keeps the digits the API wrote ("0.178960") where the browser can
// read them (JSON.parse source text access); elsewhere it stays a number and
// is shown with six decimals (money() below).
export function parseExact(text) {
  return JSON.parse(text, (key, value, context) =>
    MONEY.has(key) && context && typeof context.source === "string" ? context.source : value);
}

export function money(value) {
  return typeof value === "string" ? value : Number(value).toFixed(6);
}

// The API's own words for an error: its message, or each bad parameter and why.
function describeErrors(errors, path = []) {
  if (Array.isArray(errors)) return [`${path.join(".")}: ${errors.join(" ")}`];
  return Object.entries(errors).flatMap(([name, inner]) =>
    describeErrors(inner, name === "query" ? path : [...path, name]));
}

function errorMessage(status, text) {
  try {
    const body = JSON.parse(text);
    if (body.message) return body.message;
    if (body.errors) return describeErrors(body.errors).join("; ");
  } catch (error) {
    // not JSON: say the status
  }
  return `The service answered ${status}.`;
}

export function withQuery(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.append(name, value);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export class Api {
  constructor(key) {
    this.key = key;
    this.answers = new Map();  // URL -> {etag, body}
  }

  async fetch(url, accept, etag) {
    const headers = {"X-API-Key": this.key, Accept: accept};
    if (etag) headers["If-None-Match"] = etag;
    // no-store: the browser's cache stays out of it, so a 304 reaches this code.
    const response = await fetch(url, {headers, cache: "no-store", credentials: "omit"});
    if (response.status === 304) return response;
    if (!response.ok) {
      const message = errorMessage(response.status, await response.text());
      throw response.status === 401 ? new SignedOut(message) : new ApiError(response.status, message);
    }
    return response;
  }

  // {body, unchanged}: unchanged when the service answered 304 to our ETag.
  async json(path, params) {
    const url = withQuery(path, params);
    const known = this.answers.get(url);
    const response = await this.fetch(url, "application/json", known && known.etag);
    if (response.status === 304 && known) return {body: known.body, unchanged: true};
    const body = parseExact(await response.text());
    const etag = response.headers.get("ETag");
    if (etag) this.answers.set(url, {etag, body});
    return {body, unchanged: false};
  }

  // The API's CSV of path?params, and the file name it suggests.
  async csv(path, params) {
    const response = await this.fetch(withQuery(path, params), "text/csv");
    const disposition = response.headers.get("Content-Disposition") || "";
    const named = /filename="([^"]+)"/.exec(disposition);
    return {blob: await response.blob(), filename: named ? named[1] : "usage.csv"};
  }
}
