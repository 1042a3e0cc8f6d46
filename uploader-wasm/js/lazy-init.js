// The package's public API over wasm-bindgen's generated glue, so that `init()` is optional: the
// .wasm loads on first use, once (the generated `__wbg_init` keeps one promise for every caller,
// and forgets it after a failure so that a later call tries again).
//
// This is not a module of its own: scripts/wasm/lazy-init.mjs appends it to the generated
// droppr_uploader.js after renaming the generated exports (`ParallelUploader` to `RawUploader`,
// `findUnfinishedUploads` to `rawFindUnfinishedUploads`, `getOptimalParallelChunks` to
// `rawGetOptimalParallelChunks`), and fills in the two values it measures from the built wasm
// (`@RECORD_KEY_PREFIX@`, `@PARALLEL_BY_TYPE@`). It reads the glue's `wasm` (undefined until
// loaded) and calls its `__wbg_init`.

/** An `UploadError` made before the Rust side exists (the wasm could not be loaded). */
function loadError(cause) {
  const message = `the uploader's wasm module could not be loaded (${cause instanceof Error ? cause.message : cause})`;
  return Object.assign(new Error(message, { cause }), { name: 'UploadError', code: 'client-error' });
}

/** Loads the wasm once (the default URL: the .wasm next to this module), whoever asks first. */
function load() {
  return __wbg_init().catch((cause) => {
    throw loadError(cause);
  });
}

/** `init()`: optional; loads the .wasm (from `module_or_path` if given) before first use. */
export default async function init(module_or_path) {
  await __wbg_init(module_or_path);
}

/** Uploads one file in parallel chunks; usable before the wasm has loaded. */
export class ParallelUploader {
  /** The Rust uploader, once the wasm has loaded and accepted the options. */
  #raw = undefined;
  /** Calls made before that, replayed on it in order (null once replayed or after a failure). */
  #queued = [];
  /** Settles when the Rust uploader exists; rejects when the wasm or the options fail. */
  #ready = undefined;
  #started = undefined;
  #fileSize = 0;

  constructor(options) {
    if (wasm !== undefined) {
      // Loaded: the options are checked now, and a wrong one throws as it always did.
      this.#raw = new RawUploader(options);
      return;
    }
    const size = options?.file?.size;
    this.#fileSize = typeof size === 'number' ? size : 0;
    // Before the wasm has loaded, the options are checked once it has: a wrong one rejects
    // `start()` with the same `invalid-options` error.
    this.#ready = load().then(() => {
      this.#raw = new RawUploader(options);
      const queued = this.#queued;
      this.#queued = null;
      for (const call of queued) call(this.#raw);
    });
    this.#ready.catch(() => {
      this.#queued = null;
    });
  }

  /** Runs `call` on the Rust uploader now, or once it exists. */
  #later(call) {
    if (this.#raw !== undefined) call(this.#raw);
    else if (this.#queued !== null) this.#queued.push(call);
  }

  start() {
    if (this.#started === undefined) {
      this.#started = this.#raw !== undefined
        ? this.#raw.start()
        : new Promise((resolve, reject) => {
          this.#ready.catch(reject);
          this.#queued?.push((raw) => resolve(raw.start()));
        });
    }
    return this.#started;
  }

  abort() {
    this.#later((raw) => raw.abort());
  }

  pause() {
    this.#later((raw) => raw.pause());
  }

  resume() {
    this.#later((raw) => raw.resume());
  }

  clearSession() {
    this.#later((raw) => raw.clearSession());
  }

  free() {
    this.#later((raw) => raw.free());
  }

  /** Before the wasm has loaded: nothing sent yet, nothing decided yet (parallelism and chunk size 0). */
  getStats() {
    if (this.#raw !== undefined) return this.#raw.getStats();
    return {
      speed: 0, eta: null, activeUploads: 0, completedChunks: 0, totalChunks: 0, failedChunks: 0,
      loaded: 0, total: this.#fileSize, parallelism: 0, chunkSize: 0,
    };
  }

  get uploadId() {
    return this.#raw?.uploadId;
  }

  static get recordKeyPrefix() {
    return '@RECORD_KEY_PREFIX@';
  }
}
if (Symbol.dispose) ParallelUploader.prototype[Symbol.dispose] = ParallelUploader.prototype.free;

/** Resolves to the unfinished uploads for `uploadUrl` (loads the wasm first if needed). */
export async function findUnfinishedUploads(uploadUrl) {
  if (wasm === undefined) await load();
  return rawFindUnfinishedUploads(uploadUrl);
}

/** The rule's answers per `navigator.connection.effectiveType`, read from the wasm at build time. */
const PARALLEL_BY_TYPE = '@PARALLEL_BY_TYPE@';

export function getOptimalParallelChunks() {
  if (wasm !== undefined) return rawGetOptimalParallelChunks();
  const type = globalThis.navigator?.connection?.effectiveType;
  return PARALLEL_BY_TYPE[type] ?? PARALLEL_BY_TYPE[''];
}

/** An `Error` this package made: named `UploadError`, with a string `code`. */
export function isUploadError(value) {
  return value instanceof Error && value.name === 'UploadError' && typeof value.code === 'string';
}
