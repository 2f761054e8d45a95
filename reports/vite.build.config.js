// Evidence's own Vite config (the template `evidence build` writes to .evidence/template), with
// two changes for the first open of a page:
// - Evidence's settings page looks source icons up by name in the whole of Simple Icons
//   (`import * as simpleIcons`), so Rollup puts all ~3,000 icons (4.8 MB of JavaScript) in a
//   chunk that the layout, and so every page, loads and parses on first open. The build gets
//   only the icons Evidence shows (see simple-icons.js).
// - Charts are drawn into the prerendered HTML as SVG, so they show before the browser has
//   booted Evidence's client (see server-charts/plugin.js).
import { fileURLToPath } from 'node:url';
import evidence from './.evidence/template/vite.config.js';
import serverDrawnCharts from './server-charts/plugin.js';

export default {
	...evidence,
	plugins: [serverDrawnCharts(), ...evidence.plugins],
	resolve: {
		...evidence.resolve,
		alias: [
			{
				find: /^@steeze-ui\/simple-icons$/,
				replacement: fileURLToPath(new URL('./simple-icons.js', import.meta.url))
			}
		]
	}
};
