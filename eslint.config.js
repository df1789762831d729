import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', 'bench/results/**', 'models/**/*.onnx'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node, ...globals.browser } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    // Dependencies point one way: inference and viewer never load TensorFlow.js; core loads no sibling.
    files: ['inference/**/*.ts', 'viewer/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['@tensorflow/*', '@alhvr/training', '@alhvr/export', '@alhvr/cli'] }],
    },
  },
  {
    files: ['core/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['@tensorflow/*', '@alhvr/*', 'onnxruntime-*'] }],
    },
  },
);
