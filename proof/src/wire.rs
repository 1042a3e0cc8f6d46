//! Just enough HTTP/1.1 to stand between a client and the server (the proxy) and to send
//! requests no well-behaved client library would (the fuzzer): message heads read from a
//! buffered stream, bodies framed by `Content-Length` or chunked encoding.

use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The longest message head either side may send.
pub const MAX_HEAD: usize = 64 * 1024;

/// A request or response head: the start line and the header fields, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The whole head, start line to the blank line included, byte for byte.
    pub raw: Vec<u8>,
    pub start_line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of a header (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Content-Length`, when present and a number.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.trim().parse().ok()
    }

    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    /// True when the sender will close the connection after this message.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// The method and target of a request head.
    pub fn request_line(&self) -> (&str, &str) {
        let mut parts = self.start_line.split(' ');
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
    }

    /// The status code of a response head (0 when unreadable).
    pub fn status(&self) -> u16 {
        self.start_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// Reads one head; `None` on a clean end of stream before its first byte.
pub fn read_head(reader: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut raw = Vec::new();
    loop {
        let before = raw.len();
        let n = reader.read_until(b'\n', &mut raw)?;
        if n == 0 {
            return if raw.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if raw.len() > MAX_HEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
        }
        let line = &raw[before..];
        if (line == b"\r\n" || line == b"\n") && before > 0 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let mut lines = text.lines();
    let start_line = lines.next().unwrap_or("").to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Some(Head {
        raw,
        start_line,
        headers,
    }))
}

/// Copies exactly `len` bytes; returns how many were copied before the source ended early.
pub fn copy_exact(from: &mut impl Read, to: &mut impl Write, len: u64) -> io::Result<u64> {
    io::copy(&mut from.take(len), to)
}

/// Relays a chunked body (chunk sizes, data, the last chunk and trailers) as it is.
pub fn copy_chunked(from: &mut impl BufRead, to: &mut impl Write) -> io::Result<()> {
    loop {
        let mut line = Vec::new();
        from.read_until(b'\n', &mut line)?;
        to.write_all(&line)?;
        let text = String::from_utf8_lossy(&line);
        let size_text = text.trim().split(';').next().unwrap_or("");
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                let mut trailer = Vec::new();
                if from.read_until(b'\n', &mut trailer)? == 0 {
                    return Ok(());
                }
                to.write_all(&trailer)?;
                if trailer == b"\r\n" || trailer == b"\n" {
                    return Ok(());
                }
            }
        }
        let copied = copy_exact(from, to, size + 2)?;
        if copied < size + 2 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// An answer read back by [`send_raw`].
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub head: Head,
    pub body: Vec<u8>,
}

/// What happened to a request sent by [`send_raw`].
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Every byte of the request was handed to the kernel.
    pub written: bool,
    /// The answer, when one came.
    pub response: Option<RawResponse>,
}

/// Writes `request` (head and body, as given) on a fresh connection, optionally closing the
/// write side afterwards (a body cut short), and reads the answer until the server closes.
pub fn send_raw(
    addr: SocketAddr,
    request: &[u8],
    close_write_after: bool,
    timeout: Duration,
) -> io::Result<Exchange> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // The server may answer (and close) before the whole body is written: not an error here.
    let written = stream.write_all(request).is_ok();
    if close_write_after {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
    let mut reader = io::BufReader::new(stream);
    let Ok(Some(head)) = read_head(&mut reader) else {
        return Ok(Exchange {
            written,
            response: None,
        });
    };
    let mut body = Vec::new();
    let head_only = request.starts_with(b"HEAD ");
    match head.content_length() {
        _ if head_only => {}
        Some(len) => {
            copy_exact(&mut reader, &mut body, len)?;
        }
        None if head.is_chunked() => copy_chunked(&mut reader, &mut body)?,
        None => {
            let _ = reader.read_to_end(&mut body);
        }
    }
    Ok(Exchange {
        written,
        response: Some(RawResponse { head, body }),
    })
}

/// A request with `Connection: close` to `addr`: the head from `method`, `target` and `headers`
/// plus `Host` and (for a body) `Content-Length`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<RawResponse> {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    send_raw(addr, &bytes, false, Duration::from_secs(30))?
        .response
        .ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionAborted, "no answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_chunked_bodies() {
        let mut input: &[u8] =
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
        let head = read_head(&mut input).unwrap().unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(head.content_length(), Some(3));
        assert!(head.closes());
        assert_eq!(input, b"abc");
        let mut chunked: &[u8] = b"3\r\nabc\r\n0\r\n\r\nrest";
        let mut out = Vec::new();
        copy_chunked(&mut chunked, &mut out).unwrap();
        assert_eq!(out, b"3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(chunked, b"rest");
        let mut empty: &[u8] = b"";
        assert!(read_head(&mut empty).unwrap().is_none());
    }
}
