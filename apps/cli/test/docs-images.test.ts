import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import sharp from 'sharp';

const ROOT = join(__dirname, '..', '..', '..');

/** Every markdown file a reader meets: the README and docs/. */
function markdownFiles(): string[] {
  const docs = join(ROOT, 'docs');
  return [
    join(ROOT, 'README.md'),
    ...readdirSync(docs)
      .filter((f) => f.endsWith('.md'))
      .map((f) => join(docs, f)),
  ];
}

/** Local PNG/JPEG/SVG links of a markdown file, `![alt](path)` and `<img src="path">`, resolved. */
function imageLinks(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const links = [
    ...[...text.matchAll(/!\[[^\]]*\]\(([^)\s]+)[^)]*\)/g)].map((m) => m[1]),
    ...[...text.matchAll(/<img[^>]*\ssrc="([^"]+)"/g)].map((m) => m[1]),
  ];
  return links.filter((l) => !/^[a-z]+:\/\//i.test(l)).map((l) => resolve(dirname(file), l));
}

// People look before they read: a figure the docs show must be there, decode, and show something.
// (A renderer that wrote a blank or truncated PNG, or a doc pointing at a file never committed, fails.)
describe('every image the README and docs/ show', () => {
  const images = [...new Set(markdownFiles().flatMap(imageLinks))];

  it('is linked from the docs at all (the check reads something)', () => {
    expect(images.length).toBeGreaterThanOrEqual(10);
  });

  it.each(images.map((p) => [p.slice(ROOT.length + 1), p]))(
    '%s exists, decodes, and is not blank',
    async (_name, path) => {
      expect(existsSync(path)).toBe(true);
      const img = sharp(readFileSync(path));
      const meta = await img.metadata();
      expect(meta.width ?? 0).toBeGreaterThanOrEqual(100);
      expect(meta.height ?? 0).toBeGreaterThanOrEqual(60);
      const stats = await img.stats();
      // a blank image has one colour: every channel's spread is 0
      expect(Math.max(...stats.channels.map((c) => c.stdev))).toBeGreaterThan(1);
    },
  );
});
