import * as echarts from 'echarts';
import sharp from 'sharp';
import type { Figure } from './figures';

/**
 * A figure as SVG and PNG, with no browser: Apache ECharts renders to an SVG string server-side
 * (`ssr: true`, the same chart library and options as the web view), and sharp (libvips with
 * librsvg, already a dependency for the probe images) rasterises it. Text uses the system's
 * fonts through fontconfig (DejaVu Sans, installed by tools/setup.sh).
 */
export const REPORT_FONT = 'DejaVu Sans, Liberation Sans, Arial, sans-serif';

export function figureSvg(figure: Figure): string {
  const chart = echarts.init(null, null, {
    renderer: 'svg',
    ssr: true,
    width: figure.width,
    height: figure.height,
  });
  try {
    chart.setOption({
      animation: false,
      backgroundColor: '#ffffff',
      textStyle: { fontFamily: REPORT_FONT },
      ...figure.option,
    });
    return chart.renderToSVGString();
  } finally {
    chart.dispose();
  }
}

export async function figurePng(svg: string, figure: Pick<Figure, 'width' | 'height'>): Promise<Buffer> {
  // density 72: one SVG px is one PNG pixel, so the PNG has the figure's stated size
  return sharp(Buffer.from(svg), { density: 72 })
    .resize(figure.width, figure.height, { fit: 'fill' })
    .flatten({ background: '#ffffff' })
    .png({ compressionLevel: 9 })
    .toBuffer();
}

export async function renderFigure(figure: Figure): Promise<{ svg: string; png: Buffer }> {
  const svg = figureSvg(figure);
  return { svg, png: await figurePng(svg, figure) };
}
