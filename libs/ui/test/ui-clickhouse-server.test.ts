import { uiSuite } from './suite';

describe('cm ui on clickhouse-server 18.16', () => uiSuite('clickhouse-server'));
