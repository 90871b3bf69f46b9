// Root jest config: one jest run over every project (what `npm test` and .ci/run use).
// `npx nx run-many -t test` runs the same projects one by one through Nx.
module.exports = { projects: ['<rootDir>/libs/*/jest.config.js', '<rootDir>/apps/*/jest.config.js'] };
