import type { Matrix } from '@cm/dissect/src/types';

/**
 * The little linear algebra the probe bundles need: an eigendecomposition of a small symmetric
 * matrix (concept correlation, S x S with S ~ 50) and the top two principal axes of the concept
 * embeddings. Hand-written because both are tiny, must be bit-for-bit deterministic (bundle ids are
 * content hashes), and no well-kept JS linear-algebra package is installed; tfjs would add a
 * backend-dependent numeric path to an otherwise pure computation.
 */

/** Eigen-decomposition of a symmetric n x n matrix (row-major, float64) by cyclic Jacobi rotations.
 * Returns eigenvalues in descending order and eigenvectors as the columns of `vectors`
 * (row-major n x n). Each eigenvector's sign is fixed so that its largest-magnitude entry is positive. */
export function symmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const m = Float64Array.from(a);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += m[p * n + q] * m[p * n + q];
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = m[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const app = m[p * n + p];
        const aqq = m[q * n + q];
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const mkp = m[k * n + p];
          const mkq = m[k * n + q];
          m[k * n + p] = c * mkp - s * mkq;
          m[k * n + q] = s * mkp + c * mkq;
        }
        for (let k = 0; k < n; k++) {
          const mpk = m[p * n + k];
          const mqk = m[q * n + k];
          m[p * n + k] = c * mpk - s * mqk;
          m[q * n + k] = s * mpk + c * mqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p];
          const vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => m[j * n + j] - m[i * n + i] || i - j);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    values[dst] = m[src * n + src];
    let big = 0;
    for (let k = 0; k < n; k++) if (Math.abs(v[k * n + src]) > Math.abs(big)) big = v[k * n + src];
    const sign = big < 0 ? -1 : 1;
    for (let k = 0; k < n; k++) vectors[k * n + dst] = sign * v[k * n + src];
  });
  return { values, vectors };
}

/** Scale every row to unit L2 norm in place (rows of zero norm are left as zeros). */
export function normaliseRows(m: Matrix): Matrix {
  for (let r = 0; r < m.rows; r++) {
    let ss = 0;
    for (let c = 0; c < m.cols; c++) ss += m.data[r * m.cols + c] ** 2;
    const norm = Math.sqrt(ss);
    if (norm > 0) for (let c = 0; c < m.cols; c++) m.data[r * m.cols + c] /= norm;
  }
  return m;
}

/**
 * Fixed 2D map of the concept space: PCA of the S x d concept embeddings (rows are points).
 * Top two axes by block power iteration on the covariance applied implicitly (X_c^T X_c v), which
 * costs O(S d) per step and so also works for CLIP-sized d = 512..1024. Deterministic start and sign
 * convention (largest-magnitude entry positive), so the same embeddings always give the same map.
 */
export function fitPcaProjection(embeddings: Matrix): { components: Matrix; mean: Float32Array } {
  const { rows: s, cols: d, data } = embeddings;
  const mean = new Float64Array(d);
  for (let r = 0; r < s; r++) for (let c = 0; c < d; c++) mean[c] += data[r * d + c];
  for (let c = 0; c < d; c++) mean[c] /= Math.max(1, s);
  const centred = new Float64Array(s * d);
  for (let r = 0; r < s; r++) for (let c = 0; c < d; c++) centred[r * d + c] = data[r * d + c] - mean[c];

  const applyCov = (v: Float64Array): Float64Array => {
    const xv = new Float64Array(s);
    for (let r = 0; r < s; r++) {
      let acc = 0;
      for (let c = 0; c < d; c++) acc += centred[r * d + c] * v[c];
      xv[r] = acc;
    }
    const out = new Float64Array(d);
    for (let r = 0; r < s; r++) for (let c = 0; c < d; c++) out[c] += centred[r * d + c] * xv[r];
    return out;
  };
  const k = Math.min(2, d);
  // Deterministic, generic start vectors (not aligned with any axis).
  let basis: Float64Array[] = Array.from({ length: k }, (_, j) =>
    Float64Array.from({ length: d }, (_, c) => Math.sin(1 + c * (j + 1.618)) + 0.01 * (j + 1)),
  );
  basis = gramSchmidt(basis);
  for (let iter = 0; iter < 1000; iter++) {
    const next = gramSchmidt(basis.map(applyCov));
    let change = 0;
    for (let j = 0; j < k; j++) {
      let dot = 0;
      for (let c = 0; c < d; c++) dot += next[j][c] * basis[j][c];
      change = Math.max(change, 1 - Math.abs(dot));
    }
    basis = next;
    if (change < 1e-13) break;
  }
  const components = new Float32Array(d * 2);
  for (let j = 0; j < k; j++) {
    let big = 0;
    for (let c = 0; c < d; c++) if (Math.abs(basis[j][c]) > Math.abs(big)) big = basis[j][c];
    const sign = big < 0 ? -1 : 1;
    for (let c = 0; c < d; c++) components[c * 2 + j] = sign * basis[j][c];
  }
  return { components: { rows: d, cols: 2, data: components }, mean: Float32Array.from(mean) };
}

function gramSchmidt(vectors: Float64Array[]): Float64Array[] {
  const out: Float64Array[] = [];
  for (const v of vectors) {
    const w = Float64Array.from(v);
    for (const u of out) {
      let dot = 0;
      for (let c = 0; c < w.length; c++) dot += w[c] * u[c];
      for (let c = 0; c < w.length; c++) w[c] -= dot * u[c];
    }
    let norm = 0;
    for (let c = 0; c < w.length; c++) norm += w[c] * w[c];
    norm = Math.sqrt(norm);
    // A degenerate direction (all points on a line or a point): keep a zero axis rather than NaN.
    if (norm > 1e-300) for (let c = 0; c < w.length; c++) w[c] /= norm;
    else w.fill(0);
    out.push(w);
  }
  return out;
}
