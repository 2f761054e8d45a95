// A chart configuration drawn to SVG on the server, as Evidence's echarts action would draw it.
import { init, registerTheme } from 'echarts';
import { evidenceThemeLight } from '@evidence-dev/component-utilities/echartsThemes';

// The chart width Evidence's article gives a chart on a desktop viewport (1280 px wide); the
// SVG keeps its proportions when the page is narrower, until the browser redraws it.
const DRAWN_WIDTH = 736;
const DEFAULT_HEIGHT = 291;

registerTheme('evidence-light', evidenceThemeLight);

/** The pixel height of a CSS height such as '291px' (Evidence's default), or the default. */
function pixels(height) {
	const value = Number.parseFloat(String(height ?? ''));
	return Number.isFinite(value) && String(height).trim().match(/^[\d.]+(px)?$/) ? value : DEFAULT_HEIGHT;
}

/** Series coloured as `seriesColors` ({series name: colour}) says, the others as they were. */
function coloured(series, seriesColors) {
	return series.map((s) =>
		s.name in seriesColors ? { ...s, itemStyle: { ...s.itemStyle, color: seriesColors[s.name] } } : s
	);
}

/**
 * The SVG markup of `config` with Evidence's later overrides (seriesColors, echartsOptions,
 * seriesOptions), scaled to its container; null when there is nothing to draw yet (no series).
 */
export function drawnSvg({ config, height, echartsOptions, seriesOptions, seriesColors }) {
	if (!config?.series?.length) return null;
	const chart = init(null, 'evidence-light', {
		renderer: 'svg',
		ssr: true,
		width: DRAWN_WIDTH,
		height: pixels(height)
	});
	try {
		const series = seriesColors ? coloured(config.series, seriesColors) : config.series;
		chart.setOption({ ...config, series, animation: false });
		if (echartsOptions) chart.setOption({ ...echartsOptions });
		if (seriesOptions) {
			const reference = (s) => /^reference_/.test(s.evidenceSeriesType ?? ''); // left as they are
			chart.setOption({ series: config.series.map((s) => (reference(s) ? {} : { ...seriesOptions })) });
		}
		return chart
			.renderToSVGString()
			.replace(/^<svg([^>]*?) width="[\d.]+" height="[\d.]+"/, '<svg$1 width="100%" height="100%"');
	} finally {
		chart.dispose();
	}
}
