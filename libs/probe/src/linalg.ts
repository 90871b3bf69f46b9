import type { Matrix } from '@cm/dissect';
// Module-level aliases: looking up the global `Math` in a hot loop costs microseconds per call
// inside vm contexts (jest), which made rendering 30x slower there.
const { abs, sign, sqrt } = Math;

/**
 * The little linear algebra the probe bundles need: an eigendecomposition of a small symmetric
 * matrix (concept correlation, S x S with S ~ 50). Hand-written because it is tiny, must be
 * bit-for-bit deterministic (bundle ids are content hashes), and no well-kept JS linear-algebra
 * package is installed; tfjs would add a backend-dependent numeric path to a pure computation.
 * (The 2D map is @cm/dissect's fitProjection.)
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
        if (abs(apq) < 1e-300) continue;
        const app = m[p * n + p];
        const aqq = m[q * n + q];
        const theta = (aqq - app) / (2 * apq);
        const t = sign(theta || 1) / (abs(theta) + sqrt(theta * theta + 1));
        const c = 1 / sqrt(t * t + 1);
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
    for (let k = 0; k < n; k++) if (abs(v[k * n + src]) > abs(big)) big = v[k * n + src];
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
    const norm = sqrt(ss);
    if (norm > 0) for (let c = 0; c < m.cols; c++) m.data[r * m.cols + c] /= norm;
  }
  return m;
}
