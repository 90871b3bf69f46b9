import sharp, { type OverlayOptions } from 'sharp';
import { invalidArgument } from '@cm/core';
import type { ProbeBundle } from './bundle';

/**
 * Contact sheet of a bundle's probe images with their concepts, so that a person can see the
 * world. Captions: in labelled mode the image's ground-truth concepts; in CLIP mode its three
 * best-scoring concepts with P. Text is drawn by sharp's SVG renderer (librsvg), which needs a
 * system font (fonts-dejavu-core or any sans-serif).
 */
export interface PreviewOptions {
  /** How many images, from the first (default 48). */
  count?: number;
  columns?: number;
  /** Side of each drawn image in pixels (default 128; nearest-neighbour upscaling keeps pixels crisp). */
  cellSize?: number;
}

export function captionOf(bundle: ProbeBundle, image: number): string[] {
  const { probeScores: p, concepts } = bundle.space;
  const row = p.data.subarray(image * p.cols, (image + 1) * p.cols);
  if (bundle.manifest.probeScoresMode === 'labelled') {
    return concepts.filter((_, j) => row[j] > 0.5);
  }
  return Array.from(row, (v, j) => ({ v, j }))
    .sort((a, b) => b.v - a.v || a.j - b.j)
    .slice(0, 3)
    .map(({ v, j }) => `${concepts[j]} ${v.toFixed(3)}`);
}

/** Greedy word wrap of comma-joined items to lines of at most `width` characters. */
function wrap(items: string[], width: number, maxLines: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const item of items) {
    const piece = line ? `${line}, ${item}` : item;
    if (piece.length <= width || !line) line = piece;
    else {
      lines.push(`${line},`);
      line = item;
    }
  }
  if (line) lines.push(line);
  if (lines.length > maxLines)
    return [...lines.slice(0, maxLines - 1), `${lines[maxLines - 1].replace(/,$/, '')} ...`];
  return lines;
}

function escapeXml(text: string): string {
  return text.replace(
    /[<>&'"]/g,
    (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!,
  );
}

/** Render the contact sheet as PNG bytes. */
export async function renderContactSheet(bundle: ProbeBundle, opts: PreviewOptions = {}): Promise<Buffer> {
  const [d, h, w] = bundle.imageShape;
  const count = Math.min(d, opts.count ?? 48);
  if (!Number.isInteger(count) || count < 1)
    throw invalidArgument(`preview count must be a positive integer, got ${opts.count}`);
  const columns = Math.min(count, opts.columns ?? 8);
  const cell = opts.cellSize ?? 128;
  const fontSize = 11;
  const lineHeight = 13;
  const maxLines = 7;
  const pad = 6;
  const cellW = cell + 2 * pad;
  const cellH = cell + pad + maxLines * lineHeight + pad;
  const rows = Math.ceil(count / columns);
  const width = columns * cellW;
  const height = rows * cellH;
  const charsPerLine = Math.floor(cell / (fontSize * 0.55));

  const tiles: OverlayOptions[] = [];
  const texts: string[] = [];
  for (let i = 0; i < count; i++) {
    const pixels = Buffer.from(bundle.images.buffer, bundle.images.byteOffset + i * h * w * 3, h * w * 3);
    const tile = await sharp(pixels, { raw: { width: w, height: h, channels: 3 } })
      .resize(cell, cell, { kernel: 'nearest', fit: 'fill' })
      .png()
      .toBuffer();
    const left = (i % columns) * cellW + pad;
    const top = Math.floor(i / columns) * cellH + pad;
    tiles.push({ input: tile, left, top });
    const lines = [`#${i}`, ...wrap(captionOf(bundle, i), charsPerLine, maxLines - 1)];
    lines.forEach((line, k) => {
      texts.push(
        `<text x="${left}" y="${top + cell + pad + fontSize + k * lineHeight}">${escapeXml(line)}</text>`,
      );
    });
  }
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
<style>text { font-family: 'DejaVu Sans', sans-serif; font-size: ${fontSize}px; fill: #222; }</style>
${texts.join('\n')}
</svg>`;
  tiles.push({ input: Buffer.from(svg), left: 0, top: 0 });
  return sharp({ create: { width, height, channels: 3, background: { r: 250, g: 250, b: 250 } } })
    .composite(tiles)
    .png()
    .toBuffer();
}
