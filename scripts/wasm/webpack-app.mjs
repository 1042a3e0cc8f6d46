// Builds APP_DIR (index.html + main.js importing `droppr-uploader` from APP_DIR/node_modules)
// with webpack 5 into OUT_DIR: entry and output only, no rule for the .wasm (webpack emits it as
// an asset from the package's `new URL('….wasm', import.meta.url)`). The repository's webpack
// (devDependencies) is used; index.html is copied with the bundle's script tag.
// Usage: node webpack-app.mjs APP_DIR OUT_DIR
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import webpack from 'webpack';

const [app, out] = process.argv.slice(2).map((p) => resolve(p));
const stats = await new Promise((done, fail) => {
  webpack({
    mode: 'production',
    context: app,
    entry: './main.js',
    output: { path: out, filename: 'main.[contenthash].js', publicPath: 'auto', clean: true },
    resolve: { modules: [join(app, 'node_modules')] },
  }, (error, result) => (error ? fail(error) : done(result)));
});
if (stats.hasErrors() || stats.hasWarnings()) {
  console.error(stats.toString({ all: false, errors: true, warnings: true }));
  process.exit(1);
}
const { assets } = stats.toJson({ all: false, assets: true });
const bundle = assets.find((a) => a.name.endsWith('.js')).name;
mkdirSync(out, { recursive: true });
const html = readFileSync(join(app, 'index.html'), 'utf8')
  .replace('<script type="module" src="./main.js"></script>', `<script src="./${bundle}"></script>`);
writeFileSync(join(out, 'index.html'), html);
console.log(`[webpack-app] ${assets.map((a) => `${a.name} (${a.size} bytes)`).join(', ')}`);
