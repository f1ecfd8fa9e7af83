// Lint rules, including the layering of docs/ARCHITECTURE.md: each folder may import only
// the layers below it. The native side has the same check in test/tools/check-native-layers.mjs.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

const layer = (files, forbidden, why) => ({
  files,
  rules: {
    'no-restricted-imports': ['error', { patterns: forbidden.map((group) => ({ group: [group], message: why })) }],
  },
});

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'build/', 'native/', 'test/guest/', 'test-artifacts/'] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-require-imports': 'error',
    },
  },
  {
    // The one place that loads the compiled addon.
    files: ['app/native/addon.ts'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  layer(
    ['renderer/**'],
    ['**/app/native', '**/app/native/**', '**/app/services/**', '**/app/worker/**', '**/app/main/**', 'node:*'],
    'the renderer runs in the browser: it may import app/api (types and schemas) only',
  ),
  layer(
    ['app/native/**'],
    ['**/services/**', '**/cli/**', '**/web/**', '**/main/**', '**/preload/**', '**/worker/**', '**/demo/**'],
    'app/native wraps the addon and depends on nothing else in app/ but the contract (app/api)',
  ),
  layer(
    ['app/api/**'],
    ['**/native', '**/native/**', '**/services/**', '**/cli/**', '**/web/**', '**/main/**', '**/worker/**'],
    'app/api is the contract: schemas and types only',
  ),
  layer(
    ['app/cli/**', 'app/web/**', 'app/main/**', 'app/preload/**'],
    ['**/native', '**/native/**', '**/worker/**'],
    'front ends reach VMs through app/services, never the addon directly',
  ),
  layer(
    ['app/services/**', 'app/worker/**'],
    ['**/cli/**', '**/web/**', '**/main/**', '**/preload/**'],
    'services and workers must not depend on a front end',
  ),
  {
    files: ['**/*.mjs', '**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
