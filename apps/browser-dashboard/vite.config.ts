import { defaultClientConditions, defineConfig } from 'vite';

export default defineConfig({
  // Workspace packages from source, so the page runs without building them first.
  resolve: { conditions: ['@amps-ts/source', ...defaultClientConditions] },
  build: { target: 'es2022' },
  server: { host: '127.0.0.1' },
  preview: { host: '127.0.0.1' },
});
