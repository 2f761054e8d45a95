// A Vite plugin that gives Evidence's charts a server-drawn first frame.
//
// Evidence draws every chart in the browser, after SvelteKit has booted, fetched the page's
// query results and hydrated the page: about 1.5 s on the reference laptop, while the
// prerendered HTML shows "Loading..." where the charts go. The chart configuration is already
// complete when the page is prerendered (the KPIs in the same HTML show real numbers), so this
// plugin swaps Evidence's ECharts component, wherever Evidence's own chart components import
// it, for ServerDrawnECharts.svelte: on the server it renders the same configuration to SVG
// with ECharts' server-side renderer; in the browser it is Evidence's component, unchanged,
// which replaces the SVG with the interactive canvas when the page hydrates.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// How ServerDrawnECharts.svelte imports the component it wraps (so that import is not swapped);
// the component spells it out, since it cannot import this Node-only module.
const ORIGINAL = 'evidence:echarts-original';

// The package exports only its index (to Svelte), so its files are found where npm installs them;
// by their real path, which is how Vite names importers (a build's node_modules is a link: reports/site.py).
const coreComponents = fs.realpathSync(fileURLToPath(new URL('../node_modules/@evidence-dev/core-components/',
	import.meta.url))) + path.sep;
const originalPath = path.join(coreComponents, 'dist', 'unsorted', 'viz', 'core', 'ECharts.svelte');
const wrapperPath = fileURLToPath(new URL('./ServerDrawnECharts.svelte', import.meta.url));

export default function serverDrawnCharts() {
	return {
		name: 'platform:server-drawn-charts',
		enforce: 'pre',
		resolveId(source, importer) {
			if (source === ORIGINAL) return originalPath;
			if (importer?.startsWith(coreComponents) && /(^|\/)ECharts\.svelte$/.test(source)) return wrapperPath;
			return null;
		}
	};
}
