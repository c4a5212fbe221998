// Bundles the pinned stream-chat SDK (the one the end-to-end suite tests)
// into one browser file for the demo page: e2e/demo-sdk/stream-chat.js,
// which the all-in-one serves at /demo/stream-chat.js (its -demo-sdk flag).
// Run by `make demo-sdk` on the user's own machine: the SDK's licence
// (LICENSE in its npm package) does not let Presence redistribute it, so
// the bundle is built from what npm installed and never committed
// (.gitignore) nor embedded in a binary.
// Its first line names the bundled version; allinone/demo reads it, and its
// tests compare it with package.json and package-lock.json.

import { mkdir, readFile } from 'node:fs/promises';
import * as esbuild from 'esbuild';

const sdk = JSON.parse(await readFile(new URL('./node_modules/stream-chat/package.json', import.meta.url)));
const outDir = new URL('./demo-sdk/', import.meta.url);
const out = new URL('stream-chat.js', outDir).pathname;
await mkdir(outDir, { recursive: true });

const result = await esbuild.build({
  stdin: { contents: "export { StreamChat } from 'stream-chat';", resolveDir: new URL('.', import.meta.url).pathname },
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  minify: true,
  legalComments: 'none',
  banner: {
    js: `/* stream-chat ${sdk.version}, under Stream.io's license (LICENSE in the npm package), not Presence's; bundled with esbuild ${esbuild.version} by make demo-sdk for this machine only: do not edit, commit or redistribute. */`,
  },
  outfile: out,
  metafile: true,
  logLevel: 'warning',
});
const bytes = Object.values(result.metafile.outputs)[0].bytes;
console.log(`wrote ${out}: stream-chat ${sdk.version}, ${bytes} bytes`);
