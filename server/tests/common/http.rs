//! A deliberately small HTTP/1.1 client over `std::net::TcpStream`: one request per connection
//! (`Connection: close`), the body written by hand so that tests can stop half way, cut the body
//! short, abort, or send a chunked body that disagrees with its declared range.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// Long enough for a debug server under load, short enough that a hung test fails.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// A request being built.
#[derive(Debug, Clone)]
pub struct Req {
    addr: SocketAddr,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    content_length: bool,
    /// Source address (any 127.x.y.z works on Linux): to act as several clients.
    from: Option<std::net::IpAddr>,
}

impl Req {
    /// Sends from this loopback address instead of 127.0.0.1 (another client, to the server).
    pub fn source_ip(mut self, ip: &str) -> Self {
        self.from = Some(ip.parse().expect("an IP address"));
        self
    }

    pub fn new(addr: SocketAddr, method: &str, target: &str) -> Self {
        Self {
            addr,
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            content_length: matches!(method, "POST" | "PUT" | "PATCH"),
            from: None,
        }
    }

    /// Any displayable value: numbers and strings alike, by value for terse call sites.
    #[allow(clippy::needless_pass_by_value)]
    pub fn header(mut self, name: &str, value: impl ToString) -> Self {
        self.headers.push((name.to_owned(), value.to_string()));
        self
    }

    /// The body; `Content-Length` is sent for it.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self.content_length = true;
        self
    }

    fn head(&self, framing: Option<String>) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.method, self.target, self.addr
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(framing) = framing {
            head.push_str(&framing);
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let stream = match self.from {
            None => TcpStream::connect(self.addr)?,
            Some(ip) => {
                let socket = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::STREAM,
                    Some(socket2::Protocol::TCP),
                )?;
                socket.bind(&SocketAddr::new(ip, 0).into())?;
                socket.connect(&self.addr.into())?;
                socket.into()
            }
        };
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    fn length_header(&self) -> Option<String> {
        self.content_length
            .then(|| format!("Content-Length: {}\r\n", self.body.len()))
    }

    pub fn try_send(self) -> io::Result<Response> {
        let mut pending = self.start(usize::MAX)?;
        pending.finish()
    }

    /// Sends the request and reads the whole answer; panics on I/O errors.
    pub fn send(self) -> Response {
        let what = format!("{} {}", self.method, self.target);
        self.try_send()
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"))
    }

    /// Writes the head and the first `sent` bytes of the body, and leaves the rest for later.
    pub fn start(self, sent: usize) -> io::Result<Pending> {
        let mut stream = self.connect()?;
        let mut first = self.head(self.length_header());
        let sent = sent.min(self.body.len());
        first.extend_from_slice(&self.body[..sent]);
        stream.write_all(&first)?;
        Ok(Pending {
            stream,
            rest: self.body[sent..].to_vec(),
            head: self.method == "HEAD",
        })
    }

    /// Sends the body with `Transfer-Encoding: chunked` (no `Content-Length`), in the given
    /// pieces, whatever range the headers declare.
    pub fn send_chunked(self, pieces: &[&[u8]]) -> Response {
        let mut stream = self.connect().expect("connect");
        let mut out = self.head(Some("Transfer-Encoding: chunked\r\n".to_owned()));
        for piece in pieces.iter().filter(|p| !p.is_empty()) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        // The server may answer before it has read everything; what counts is the answer.
        let _ = stream.write_all(&out);
        read_response(&mut stream).expect("answer to a chunked request")
    }
}

/// A request whose head (and part of its body) is on the wire.
#[derive(Debug)]
pub struct Pending {
    stream: TcpStream,
    rest: Vec<u8>,
    /// The answer to a HEAD has no body, whatever its Content-Length says.
    head: bool,
}

impl Pending {
    /// Sends the rest of the body and reads the answer.
    pub fn finish(&mut self) -> io::Result<Response> {
        let rest = std::mem::take(&mut self.rest);
        self.stream.write_all(&rest)?;
        if self.head {
            let mut raw = Vec::new();
            self.stream.read_to_end(&mut raw)?;
            return parse_head_response(&raw);
        }
        read_response(&mut self.stream)
    }

    /// Finishes every request of `held` at once (a thread each, so none waits behind another)
    /// and returns their answers' JSON, each expected to be 200.
    pub fn finish_all(held: &mut [Pending]) -> Vec<Value> {
        std::thread::scope(|s| {
            let threads: Vec<_> = held
                .iter_mut()
                .map(|p| s.spawn(move || p.finish().expect("finish the chunk").ok_json(200)))
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("a chunk's thread panicked"))
                .collect()
        })
    }

    /// Sends the next `n` bytes of the body (fewer if less is left); false when nothing is left
    /// or the server stopped reading.
    pub fn send_more(&mut self, n: usize) -> bool {
        let n = n.min(self.rest.len());
        if n == 0 {
            return false;
        }
        let piece: Vec<u8> = self.rest.drain(..n).collect();
        self.stream.write_all(&piece).is_ok()
    }

    /// Reads the answer without sending more of the body.
    pub fn answer(&mut self) -> io::Result<Response> {
        read_response(&mut self.stream)
    }

    /// Stops sending (the body stays short of its `Content-Length`), half-closes the connection
    /// and reads whatever the server answers.
    pub fn cut_short(mut self) -> io::Result<Response> {
        self.stream.shutdown(Shutdown::Write)?;
        read_response(&mut self.stream)
    }

    /// Closes the connection both ways mid-body: the client went away.
    pub fn abort(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer {} is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// Asserts a success status and returns the JSON body.
    pub fn ok_json(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text());
        self.json()
    }

    /// Asserts an error answer: its status, a JSON body `{error, code}` with a message for people.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.json()["code"].as_str()),
            (status, Some(code)),
            "unexpected answer: {}",
            self.text()
        );
        let body = self.json();
        let message = body["error"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "no error message in {body}");
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "error answer is not JSON: {:?}",
            self.headers
        );
    }
}

/// Sends raw bytes on one connection, each part followed by a pause, then reads until the server
/// closes it (at most 20 s). For heads the HTTP layer refuses before there is a request.
pub fn raw_exchange(addr: SocketAddr, parts: &[(&[u8], Duration)]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    for (bytes, pause) in parts {
        stream.write_all(bytes)?;
        std::thread::sleep(*pause);
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    Ok(raw)
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads until the server closes the connection, then parses the answer.
fn read_response(stream: &mut TcpStream) -> io::Result<Response> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Parses one answer from raw bytes (its head, then the body its framing says).
pub fn parse_response(raw: &[u8]) -> io::Result<Response> {
    parse_answer(raw, false)
}

fn parse_answer(raw: &[u8], head_only: bool) -> io::Result<Response> {
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| {
        bad(format!(
            "no complete answer head in {} bytes: {:?}",
            raw.len(),
            String::from_utf8_lossy(raw)
        ))
    })?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if head_only {
        Vec::new()
    } else if chunked {
        decode_chunked(rest)?
    } else {
        match headers.iter().find(|(n, _)| n == "content-length") {
            Some((_, len)) => {
                let len: usize = len.parse().map_err(|_| bad(format!("length {len}")))?;
                rest.get(..len)
                    .ok_or_else(|| bad(format!("body has {} of {len} bytes", rest.len())))?
                    .to_vec()
            }
            None => rest.to_vec(),
        }
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// An answer to HEAD: the head only.
fn parse_head_response(raw: &[u8]) -> io::Result<Response> {
    parse_answer(raw, true)
}

fn decode_chunked(mut rest: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or_else(|| bad("chunk size line".into()))?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad(format!("chunk size {size_text:?}")))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(
            rest.get(..size)
                .ok_or_else(|| bad("chunk cut short".into()))?,
        );
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

/// `encodeURIComponent`: everything but unreserved characters as `%XX` of its UTF-8 bytes.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
