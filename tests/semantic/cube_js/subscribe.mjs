// Cube's official client subscribing over its WebSocket transport, as an app does:
//   node subscribe.mjs <ws url> '<JSON list of {name, token, query}>'
// prints one JSON line per result or error ({name, rows} or {name, error, status}) until stdin closes.
// A subscription that gets an error is unsubscribed (else the client would keep it and reconnect).
import cube from "@cubejs-client/core";
import WebSocketTransport from "@cubejs-client/ws-transport";

const [url, spec] = process.argv.slice(2);
const print = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const clients = new Map(); // one client (one socket) per token, as an app holds one per user
const subscriptions = [];

for (const { name, token, query } of JSON.parse(spec)) {
  if (!clients.has(token)) {
    const transport = new WebSocketTransport({ authorization: token, apiUrl: url });
    clients.set(token, { api: cube(token, { transport }), transport });
  }
  const subscription = clients.get(token).api.subscribe(query, {}, (error, resultSet) => {
    if (error) {
      print({ name, error: error.message, status: error.status });
      subscription.unsubscribe();
    } else {
      print({ name, rows: resultSet.rawData() });
    }
  });
  subscriptions.push(subscription);
}

process.stdin.on("data", () => {});
process.stdin.on("end", async () => {
  await Promise.all(subscriptions.map((s) => s.unsubscribe()));
  await Promise.all([...clients.values()].map(({ transport }) => transport.close()));
  process.exit(0);
});
