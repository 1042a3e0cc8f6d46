// A web app that uses the published package as a developer would: a bare import of
// `droppr-uploader`, no `init()`, no bundler configuration. The same file runs unbundled
// (plain.html maps the import to the server's /pkg) and bundled by Vite and webpack
// (scripts/package-apps.sh builds it from the packed tarball). The tests read `window.app`.
import { ParallelUploader, findUnfinishedUploads, isUploadError } from 'droppr-uploader';

const request = new URLSearchParams(location.search).get('request');
const uploadUrl = `/api/droppr/requests/${request}/upload-chunk`;
const app = { state: 'ready', result: null, error: null, progress: 0, unfinished: null };
window.app = app;

document.querySelector('#file').addEventListener('change', async (event) => {
  const [file] = event.target.files;
  app.state = 'uploading';
  try {
    const uploader = new ParallelUploader({
      file,
      uploadUrl,
      chunkSize: 256 * 1024,
      onProgress: (loaded, total) => { app.progress = loaded / total; },
    });
    app.result = await uploader.start();
    app.state = 'done';
  } catch (error) {
    app.error = isUploadError(error) ? { code: error.code, message: error.message } : String(error);
    app.state = 'failed';
  }
  app.unfinished = (await findUnfinishedUploads(uploadUrl)).length;
});
app.state = 'loaded';
