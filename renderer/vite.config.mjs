// The renderer's build (vite build -> dist/renderer, served by `berth serve` and loaded by
// the Electron window) and its component tests (vitest + happy-dom).
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const here = decodeURIComponent(new URL('.', import.meta.url).pathname);

export default defineConfig({
  root: here,
  // Relative asset URLs: the page works from file://, from the web server's root, or under
  // a token path.
  base: './',
  plugins: [react()],
  build: {
    outDir: `${here}../dist/renderer`,
    emptyOutDir: true,
    sourcemap: true,
    target: 'es2022',
    chunkSizeWarningLimit: 2000,
  },
  test: {
    environment: 'happy-dom',
    include: ['test/**/*.test.{ts,tsx}'],
  },
});
