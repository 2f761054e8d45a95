// The Simple Icons that Evidence's pages can show: the header's links (GitHub, Slack) and the
// icon our source plugin declares (@evidence-dev/duckdb: "Duckdb"). A source plugin added to
// evidence.plugins.yaml whose icon is not here shows no icon on the settings page; add it here.
export { Github, Slack, Duckdb } from './node_modules/@steeze-ui/simple-icons/dist/index.js';
