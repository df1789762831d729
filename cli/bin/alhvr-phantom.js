#!/usr/bin/env node
// Thin launcher so the bin exists before the TypeScript build; the command lives in src/bin.
import "../dist/bin/alhvr-phantom.js";
