// Cube's official client against our metrics server: node check.mjs <apiUrl> <token> prints JSON.
import cube from "@cubejs-client/core";

const [apiUrl, token] = process.argv.slice(2);
const api = cube(token, { apiUrl });

const orFilter = {
  measures: ["metrics.revenue", "metrics.orders"],
  dimensions: ["metrics.tenant"],
  timeDimensions: [{ dimension: "metrics.metric_time", granularity: "month", dateRange: ["2026-01-01", "2026-12-31"] }],
  filters: [{ or: [
    { member: "metrics.tenant", operator: "equals", values: ["t001"] },
    { member: "metrics.tenant", operator: "equals", values: ["t002"] },
  ] }],
  order: { "metrics.metric_time": "asc" },
};
const relative = {
  measures: ["metrics.events"],
  timeDimensions: [{ dimension: "metrics.metric_time", granularity: "day", dateRange: "last 7 days" }],
};

const loaded = await api.load(orFilter);
const recent = await api.load(relative);
const meta = await api.meta();
const sql = await api.sql(orFilter);
console.log(JSON.stringify({
  rows: loaded.tablePivot(),
  series: loaded.series().map((s) => ({ key: s.key, points: s.series.length })),
  recentQuery: recent.query(),
  recentRows: recent.tablePivot(),
  measures: meta.meta.cubes[0].measures.map((m) => m.name),
  sql: sql.sql(),
}));
