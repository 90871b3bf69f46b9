export * from './datasource';
export * from './macros';
export * from './sql';
export * from './dashboards';
export * from './pipeline';
export * from './alert-rules';
export * from './generate';
export * from './panels';
