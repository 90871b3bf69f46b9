#!/usr/bin/env node
// Entry point of `npx cm`. Sources are TypeScript run through tsx (no build step).
require('tsx/cjs');
require('../src/main.ts');
