// A TypeScript consumer of every option, callback and method of the package, compiled with
// `tsc --strict` (no skipLibCheck) by scripts/test-types.sh against the built package's .d.ts.
// It only has to type-check; it is never run.
import init, {
  ParallelUploader,
  findUnfinishedUploads,
  getOptimalParallelChunks,
  isUploadError,
} from '../pkg/droppr_uploader.js';
import type {
  ParallelUploaderOptions,
  RetryEvent,
  UnfinishedUpload,
  UploadError,
  UploadErrorCode,
  UploadRequest,
  UploadResponse,
  UploadResult,
  UploadStats,
} from '../pkg/droppr_uploader.js';
// wasm-bindgen's generated internals stay out of the public types (scripts/wasm/public-types.mjs).
// @ts-expect-error InitOutput is not exported
import type { InitOutput } from '../pkg/droppr_uploader.js';
// @ts-expect-error initSync is not exported
import { initSync } from '../pkg/droppr_uploader.js';

async function upload(file: File, blob: Blob, uploadUrl: string): Promise<UploadResult> {
  await init(); // optional: the .wasm also loads by itself on first use
  await init({ module_or_path: new URL('droppr_uploader_bg.wasm', 'https://cdn.example/') });
  const controller = new AbortController();
  const options: ParallelUploaderOptions = {
    file,
    name: file.name,
    uploadUrl,
    relPath: 'holiday/clip.mp4',
    chunkSize: 8 * 1024 * 1024,
    minChunkSize: 1024 * 1024,
    maxChunkSize: 64 * 1024 * 1024,
    maxParallelChunks: getOptimalParallelChunks(),
    connectionLimit: 5,
    maxRetries: 5,
    adaptiveChunkSizing: true,
    chunkChecksums: true,
    headers: { 'X-Request-Password': undefined, 'X-Captcha-Token': null, Authorization: 'Bearer x' },
    metadata: { album: 'summer' },
    withCredentials: false,
    signal: controller.signal,
    onProgress: (loaded: number, total: number): void => void (loaded / total),
    onChunkComplete: (chunkSize: number, bytesAccepted: number, bytesTotal: number): void =>
      void (chunkSize + bytesAccepted + bytesTotal),
    onComplete: (result: UploadResult): void => {
      // The whole-file composite: a string to compare, or null (no WebCrypto, no chunk checksums).
      const checksum: string | null = result.checksum;
      void [result.uploadId.length, checksum?.startsWith('sha256:')];
    },
    onError: (error: UploadError): void => void (error.code === 'aborted' ? error.status : error.message),
    onRetry: (retry: RetryEvent): void => {
      const code: UploadErrorCode = retry.code;
      void [retry.status, retry.retryInMs, retry.attempt, retry.chunkIndex ?? -1, code];
    },
    onShouldRetry: (error: UploadError, attempt: number): boolean => error.code !== 'rate-limited' || attempt < 3,
    onBeforeRequest: async (request: UploadRequest): Promise<void> => {
      request.headers['Authorization'] = `Bearer ${request.method} ${request.url} ${request.chunkIndex}`;
    },
    onAfterResponse: (request: UploadRequest, response: UploadResponse): void =>
      void [request.url, response.status, response.body],
  };
  const uploader = new ParallelUploader(options);
  const anonymous = new ParallelUploader({ file: blob, name: 'data.bin', uploadUrl });
  anonymous.abort();
  uploader.pause();
  uploader.resume();
  const stats: UploadStats = uploader.getStats();
  const eta: number | null = stats.eta;
  void [stats.speed, eta, stats.activeUploads, stats.completedChunks, stats.totalChunks, stats.failedChunks,
    stats.loaded, stats.total, stats.parallelism, stats.chunkSize];
  const id: string | undefined = uploader.uploadId;
  void id;
  void ParallelUploader.recordKeyPrefix;
  const unfinished: UnfinishedUpload[] = await findUnfinishedUploads(uploadUrl);
  for (const u of unfinished) void [u.key, u.uploadId, u.name, u.size, u.lastModified, u.timestamp, u.completedChunks];
  try {
    return await uploader.start();
  } catch (e: unknown) {
    if (isUploadError(e)) {
      const code: UploadErrorCode = e.code;
      void code;
    }
    throw e;
  } finally {
    uploader.clearSession();
    uploader.free();
  }
}

void upload;

void initSync;
export type { InitOutput };
