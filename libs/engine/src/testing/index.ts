export * from './fixtures';
export * from './argmax-dissector';
