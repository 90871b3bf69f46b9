/**
 * The SDK publishes its modules through package.json "exports" only (no root index), which
 * TypeScript's `moduleResolution: node` (this repo's setting) does not read. Node's require does,
 * so at runtime '@grafana/grafana-foundation-sdk/dashboard' resolves; these declarations point the
 * type checker at the same files.
 */
declare module '@grafana/grafana-foundation-sdk/dashboard' {
  export * from '@grafana/grafana-foundation-sdk/dist/dashboard';
}
