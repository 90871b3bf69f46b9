// tsconfig uses classic "node" resolution, which ignores package.json "exports"; chdb publishes its
// @clickhouse/client Connection under the `chdb/connection` export, whose types live here.
declare module 'chdb/connection' {
  export { createChdbConnection } from 'chdb/dist/connection/index';
}
