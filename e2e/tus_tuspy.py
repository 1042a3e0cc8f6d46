"""tuspy (PyPI) against the server's tus endpoint: an upload with sha1 Upload-Checksum on every
chunk, stopped after two chunks, then resumed by a new uploader from the server's offset (HEAD).
Run by e2e/tus-python.test.mjs with: ENDPOINT FILE NAME. Prints the offsets it saw as JSON."""

import json
import sys

from tusclient import client

CHUNK = 1024 * 1024


def main() -> None:
    endpoint, path, name = sys.argv[1:4]
    tus = client.TusClient(endpoint)
    first = tus.uploader(
        file_path=path, chunk_size=CHUNK, metadata={"filename": name}, upload_checksum=True
    )
    first.upload(stop_at=2 * CHUNK)
    stopped_at = first.offset
    # A new uploader on the same URL asks the server where it stands, and goes on from there.
    resumed = tus.uploader(file_path=path, chunk_size=CHUNK, url=first.url, upload_checksum=True)
    resumed_from = resumed.offset
    resumed.upload()
    print(json.dumps({"url": first.url, "stopped_at": stopped_at, "resumed_from": resumed_from, "end": resumed.offset}))


if __name__ == "__main__":
    main()
