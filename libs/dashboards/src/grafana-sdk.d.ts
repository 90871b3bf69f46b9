/**
 * The SDK publishes its modules through package.json "exports" only (there is no root index), and
 * TypeScript's `moduleResolution: node` (this repository's setting) does not read "exports". Node's
 * require does, so at runtime '@grafana/grafana-foundation-sdk/<module>' resolves; these ambient
 * declarations point the type checker at the very same files.
 */
declare module '@grafana/grafana-foundation-sdk/alerting' {
  export * from '@grafana/grafana-foundation-sdk/dist/alerting';
}
declare module '@grafana/grafana-foundation-sdk/cog' {
  export * from '@grafana/grafana-foundation-sdk/dist/cog';
}
declare module '@grafana/grafana-foundation-sdk/common' {
  export * from '@grafana/grafana-foundation-sdk/dist/common';
}
declare module '@grafana/grafana-foundation-sdk/dashboard' {
  export * from '@grafana/grafana-foundation-sdk/dist/dashboard';
}
declare module '@grafana/grafana-foundation-sdk/expr' {
  export * from '@grafana/grafana-foundation-sdk/dist/expr';
}
declare module '@grafana/grafana-foundation-sdk/statetimeline' {
  export * from '@grafana/grafana-foundation-sdk/dist/statetimeline';
}
declare module '@grafana/grafana-foundation-sdk/table' {
  export * from '@grafana/grafana-foundation-sdk/dist/table';
}
declare module '@grafana/grafana-foundation-sdk/timeseries' {
  export * from '@grafana/grafana-foundation-sdk/dist/timeseries';
}
declare module '@grafana/grafana-foundation-sdk/trend' {
  export * from '@grafana/grafana-foundation-sdk/dist/trend';
}
declare module '@grafana/grafana-foundation-sdk/xychart' {
  export * from '@grafana/grafana-foundation-sdk/dist/xychart';
}
declare module '@grafana/grafana-foundation-sdk/barchart' {
  export * from '@grafana/grafana-foundation-sdk/dist/barchart';
}
declare module '@grafana/grafana-foundation-sdk/prometheus' {
  export * from '@grafana/grafana-foundation-sdk/dist/prometheus';
}
