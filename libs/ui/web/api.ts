import type { ApiError } from '../src/api-types';

/** A failed API call: 404 (something named in the URL is unknown), 503 (store unreachable), ... */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiError,
  ) {
    super(body.error);
  }
}

export async function getJson<T>(url: string): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url, { headers: { accept: 'application/json' } });
  } catch (e) {
    throw new ApiFailure(0, {
      error: `the cm ui server cannot be reached (${(e as Error).message})`,
      unavailable: true,
    });
  }
  const body = (await res.json().catch(() => ({ error: `HTTP ${res.status}` }))) as T | ApiError;
  if (!res.ok) throw new ApiFailure(res.status, body as ApiError);
  return body as T;
}

/** A path from segments, each percent-encoded (run ids may hold slashes, quotes, spaces). */
export const path = (...segments: (string | number)[]): string =>
  '/' + segments.map((s) => encodeURIComponent(String(s))).join('/');

export const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export const fmt = (v: number | null | undefined, digits = 2): string =>
  v === null || v === undefined || Number.isNaN(v) ? '–' : v.toFixed(digits);

export const pct = (v: number | null | undefined): string =>
  v === null || v === undefined || Number.isNaN(v) ? '–' : `${(v * 100).toFixed(0)}%`;
