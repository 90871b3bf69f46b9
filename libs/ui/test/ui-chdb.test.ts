import { uiSuite } from './suite';

describe('cm ui on chDB', () => uiSuite('chdb'));
