// Unit tests of the labextension's components (jsdom; `jlpm test`, run by CI). The
// @jupyterlab and @lumino packages ship ES modules without "type": "module": inlined, so that
// vitest transforms them instead of handing them to Node as CommonJS.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    environment: 'jsdom',
    include: ['test/**/*.spec.ts'],
    setupFiles: ['test/setup.ts'],
    server: { deps: { inline: [/@jupyterlab\//, /@lumino\//] } }
  }
});
