# Sourced by scripts/build-wasm.sh and scripts/test-wasm.sh: the cargo settings the package ships
# with, so that the browser tests run the uploader compiled exactly as the package's wasm is.
# The workspace's release profile stays tuned for the server: lto and panic cannot be set per
# package, so they are set here, for the wasm builds only.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z
export CARGO_PROFILE_RELEASE_LTO=true
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_PANIC=abort
export CARGO_PROFILE_RELEASE_DEBUG=false
# Panic locations name their source files; strip the registry's absolute folder from them
# (shorter, and the package no longer records where it was built).
for registry in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
  [ -d "$registry" ] && RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$registry="
done
# Likewise the standard library's sources (rust-src) that generic code is instantiated from:
# their panic locations then read as the precompiled std's own (`/rustc/<commit>/library/...`),
# and the linker keeps one copy of each path.
sysroot=$(rustc --print sysroot)
commit=$(rustc -vV | sed -n 's/^commit-hash: //p')
RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$sysroot/lib/rustlib/src/rust=/rustc/$commit"
export RUSTFLAGS
# wasm-opt (npm binaryen) strips the names afterwards; keeping them until then keeps the
# target_features section wasm-bindgen reads.
export CARGO_PROFILE_RELEASE_STRIP=false
