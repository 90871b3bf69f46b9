export * from './watch';
export * from './layers';
export * from './prober';
export * from './splits';
export * from './baseline';
