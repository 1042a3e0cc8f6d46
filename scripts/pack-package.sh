#!/usr/bin/env bash
# The npm package as it ships, and apps built from it: `npm pack` of uploader-wasm/pkg (built by
# scripts/build-wasm.sh when missing or older than its sources) into OUT, unpacked into
# OUT/package (what the browser tests are served), then e2e/package-app built by Vite and by
# webpack (the repository's own devDependencies) in a scratch app that installed the tarball, with
# no bundler settings for the .wasm, into OUT/apps/vite and OUT/apps/webpack.
# Checks that the unpacked files are byte for byte the build's. Usage: pack-package.sh OUT
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
out=$(mkdir -p "$1" && cd "$1" && pwd)
root=$PWD
started=$(date +%s)

pkg=uploader-wasm/pkg
if [ ! -f "$pkg/package.json" ] || [ -n "$(find uploader-wasm/src uploader-wasm/js uploader-wasm/README.md protocol/src uploader-wasm/Cargo.toml scripts/wasm scripts/build-wasm.sh -newer "$pkg/package.json" 2>/dev/null | head -n 1)" ]; then
  bash scripts/build-wasm.sh
fi

rm -rf "$out/package" "$out/apps" "$out/app-src" "$out"/*.tgz
tarball="$out/$(cd "$pkg" && npm pack --silent --pack-destination "$out")"
tar -xzf "$tarball" -C "$out"
# Every shipped file is the build's, and the build's runtime files all ship.
for f in "$out"/package/*; do
  name=$(basename "$f")
  if ! cmp -s "$f" "$pkg/$name"; then
    echo "[pack-package] $name in the tarball differs from $pkg/$name" >&2
    exit 1
  fi
done
for name in droppr_uploader.js droppr_uploader_bg.wasm droppr_uploader.d.ts package.json LICENSE README.md; do
  [ -f "$out/package/$name" ] || { echo "[pack-package] $name is not in the tarball" >&2; exit 1; }
done
echo "[pack-package] $(basename "$tarball"): $(wc -c <"$tarball") bytes; $(ls "$out/package" | tr '\n' ' ')"

# A scratch app that installs the tarball, as a user's app would (no registry needed: no dependencies).
app="$out/app-src"
mkdir -p "$app"
cp e2e/package-app/index.html e2e/package-app/main.js "$app/"
printf '{ "name": "droppr-package-app", "private": true, "type": "module" }\n' >"$app/package.json"
(cd "$app" && npm install --silent --no-audit --no-fund --no-package-lock "$tarball")

# Vite: no config file; `--base ./` only so that the app can live under any path.
"$root/node_modules/.bin/vite" build "$app" --base ./ --outDir "$out/apps/vite" --emptyOutDir --logLevel warn
# webpack 5: entry and output only; the .wasm comes from the package's `new URL(..., import.meta.url)`.
node scripts/wasm/webpack-app.mjs "$app" "$out/apps/webpack"
for bundler in vite webpack; do
  if ! find "$out/apps/$bundler" -name '*.wasm' | grep -q .; then
    echo "[pack-package] the $bundler build has no .wasm" >&2
    exit 1
  fi
done
echo "[pack-package] Vite and webpack apps built from the tarball in $(( $(date +%s) - started )) s"
