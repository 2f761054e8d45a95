// The live page: today's totals and the last hour per minute, pushed by the metrics server over
// Cube's WebSocket transport each time a publish changes them (no polling). The token comes in the
// URL's fragment (/live#token=<JWT>), which the browser never sends to a server; the page keeps it in
// this tab's sessionStorage, takes it out of the address bar, and asks for one when it has none or the
// server refuses it.
import cube from "@cubejs-client/core";
import WebSocketTransport from "@cubejs-client/ws-transport";

const TOTALS = [
  ["live.live_events", "Events"],
  ["live.live_visitors", "Visitors"],
  ["live.live_sessions_started", "Sessions started"],
  ["live.live_page_views", "Page views"],
  ["live.live_signups", "Signups"],
  ["live.live_checkouts", "Checkouts"],
  ["live.live_gross_revenue", "Gross revenue"],
  ["live.live_errors", "Errors"],
];
const MINUTES = 60;
const TOKEN_KEY = "live-metrics-token";
const timezone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const number = new Intl.NumberFormat();
const money = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD" });
const $ = (id) => document.getElementById(id);

function takeToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem(TOKEN_KEY, fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function whoFor(token) {
  try {
    const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return claims.role === "admin" ? "all tenants" : `tenant ${claims.tenant_id}`;
  } catch {
    return "";
  }
}

function setStatus(state, text) {
  const status = $("status");
  status.dataset.state = state;
  status.textContent = text;
}

function askForToken(reason) {
  setStatus("error", reason);
  $("token-form").hidden = false;
}

function stamp(element) {
  element.dataset.updatedAt = String(Date.now());
  $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

function renderTotals(row) {
  for (const [member] of TOTALS) {
    const value = $(member);
    const raw = row[member];
    const text = raw == null ? "0" : member.endsWith("revenue") ? money.format(Number(raw)) : number.format(Number(raw));
    if (value.textContent !== text) {
      value.textContent = text;
      stamp(value);
    }
  }
}

// the minute keys Cube's rows carry ("2026-11-30T07:41:00.000", local to the query's time zone)
function minuteKey(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:00.000`;
}

let chartRows = [];

// the last hour's bars, with the minutes as the clock moves (the rows come when they change)
function drawChart() {
  const byMinute = new Map(chartRows.map((r) => [r["live.metric_time.minute"], r]));
  const now = Date.now();
  const bars = [];
  for (let i = MINUTES - 1; i >= 0; i -= 1) {
    const at = new Date(now - i * 60000);
    const row = byMinute.get(minuteKey(at)) || {};
    bars.push({ at, events: Number(row["live.live_events"] || 0), errors: Number(row["live.live_errors"] || 0) });
  }
  const top = Math.max(1, ...bars.map((b) => b.events));
  const svg = $("chart");
  const width = svg.clientWidth || 600, height = svg.clientHeight || 200, axis = 18, plot = height - axis - 16;
  const step = width / MINUTES;
  const time = (date) => date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const parts = bars.map((b, i) => {
    const h = (b.events / top) * plot, e = (b.errors / top) * plot, y = height - axis;
    const label = `${time(b.at)}: ${number.format(b.events)} events, ${number.format(b.errors)} errors`;
    return `<g><title>${label}</title><rect class="events" x="${i * step + 1}" y="${y - h}" width="${step - 2}" height="${h}"/>` +
      `<rect class="errors" x="${i * step + 1}" y="${y - e}" width="${step - 2}" height="${e}"/></g>`;
  });
  const ticks = bars.map((b, i) => (i % 10 === 9 ?
    `<text x="${(i + 0.5) * step}" y="${height - 4}" text-anchor="middle">${time(b.at)}</text>` : ""));
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.innerHTML = parts.join("") + ticks.join("") +
    `<text x="6" y="12">${number.format(top)} events per minute at most</text>`;
  svg.dataset.events = String(bars.reduce((sum, b) => sum + b.events, 0));
}

function renderChart(rows) {
  chartRows = rows;
  drawChart();
  stamp($("chart"));
}

function start(token) {
  $("who").textContent = whoFor(token);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const transport = new WebSocketTransport({ authorization: token, apiUrl: `${scheme}://${location.host}/` });
  const api = cube(token, { transport });
  const subscriptions = [];
  const failed = (error) => {
    subscriptions.forEach((s) => s.unsubscribe());
    if (error.status === 403) {
      sessionStorage.removeItem(TOKEN_KEY);
      askForToken(`token refused: ${error.message}`);
    } else {
      setStatus("error", error.message);
    }
  };
  const subscribe = (query, render) => subscriptions.push(api.subscribe(query, {}, (error, resultSet) => {
    if (error) {
      failed(error);
      return;
    }
    setStatus("live", "live");
    render(resultSet.rawData());
  }));
  subscribe({ measures: TOTALS.map(([member]) => member), timezone,
    timeDimensions: [{ dimension: "live.metric_time", dateRange: "today" }] }, (rows) => renderTotals(rows[0] || {}));
  subscribe({ measures: ["live.live_events", "live.live_errors"], timezone,
    timeDimensions: [{ dimension: "live.metric_time", granularity: "minute", dateRange: `from ${MINUTES - 1} minutes ago to now` }],
    order: { "live.metric_time": "asc" } }, renderChart);
}

function main() {
  $("totals").innerHTML = TOTALS.map(([member, title]) =>
    `<div class="tile"><div class="title">${title}</div><div class="value" id="${member}">–</div></div>`).join("");
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    location.reload();
  });
  setInterval(drawChart, 30000);
  window.addEventListener("resize", drawChart);
  const token = takeToken();
  if (!token) {
    askForToken("no token: open /live#token=<token>, or paste one below");
    return;
  }
  start(token);
}

main();
