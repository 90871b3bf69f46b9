export * from './fixtures';
export * from './argmax-dissector';
export * from './evidence';
