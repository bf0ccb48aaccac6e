#!/usr/bin/env node
// A solc-compatible front for the pinned solcjs (the official compiler built to wasm).
// py-solc-x needs an executable that answers `--version` with a line
// "Version: X.Y.Z+commit.HASH" and `--standard-json` with nothing but JSON on
// stdout; the solcjs command line prints an SMT-solver notice first, so it cannot
// be used directly. This program loads the same compiler as a library instead.
'use strict';
const solc = require('solc');

const args = process.argv.slice(2);
if (args.includes('--version')) {
  process.stdout.write('solc, the solidity compiler commandline interface\n');
  process.stdout.write('Version: ' + solc.version() + '\n');
  process.exit(0);
}
if (args.includes('--standard-json')) {
  const chunks = [];
  process.stdin.on('data', (chunk) => chunks.push(chunk));
  process.stdin.on('end', () => {
    const input = Buffer.concat(chunks).toString('utf8');
    process.stdout.write(solc.compile(input));
    process.stdout.write('\n');
  });
} else {
  process.stderr.write('usage: solc-json.js --version | --standard-json < input.json\n');
  process.exit(2);
}
