// Cube's official client against our metrics server: node check.mjs <apiUrl> <token> prints JSON.
import cube from "@cubejs-client/core";

const [apiUrl, token, firstDay, lastDay] = process.argv.slice(2);
const api = cube(token, { apiUrl });

const orFilter = {
  measures: ["orders.revenue", "orders.orders"],
  dimensions: ["orders.tenant"],
  timeDimensions: [{ dimension: "orders.metric_time", granularity: "month", dateRange: [firstDay, lastDay] }],
  filters: [{ or: [
    { member: "orders.tenant", operator: "equals", values: ["t001"] },
    { member: "orders.tenant", operator: "equals", values: ["t002"] },
  ] }],
  order: { "orders.metric_time": "asc" },
};
const relative = {
  measures: ["events.events"],
  timeDimensions: [{ dimension: "events.metric_time", granularity: "day", dateRange: "last 7 days" }],
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
  measures: meta.meta.cubes.flatMap((c) => c.measures.map((m) => m.name)),
  sql: sql.sql(),
}));
