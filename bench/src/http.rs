//! Just enough HTTP/1.1 for a load generator: one keep-alive connection, a request with a body
//! written straight from memory, an answer with a `Content-Length` body. Nothing is hidden
//! between the socket and the clock.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{BenchError, Result};

#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    host: String,
    /// Bytes read past the last answer (none with a well-behaved server).
    pending: Vec<u8>,
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// When the request's last byte was handed to the socket.
    pub sent: Instant,
    /// When the answer's last byte arrived.
    pub answered: Instant,
}

impl Answer {
    pub fn json(&self) -> Result<serde_json::Value> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            host: addr.to_string(),
            pending: Vec::new(),
        })
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> Result<Answer> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        self.stream.write_all(head.as_bytes()).await?;
        self.stream.write_all(body).await?;
        let sent = Instant::now();
        let (status, body) = self.read_answer().await?;
        Ok(Answer {
            status,
            body,
            sent,
            answered: Instant::now(),
        })
    }

    async fn read_answer(&mut self) -> Result<(u16, Vec<u8>)> {
        let mut buf = std::mem::take(&mut self.pending);
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > 64 * 1024 {
                return Err(BenchError::Http("answer head over 64 KiB".into()));
            }
            self.fill(&mut buf).await?;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| BenchError::Http(format!("bad status line in {head:?}")))?;
        let mut length = None;
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
                    return Err(BenchError::Http("chunked answers are not supported".into()));
                }
            }
        }
        let length = length.unwrap_or(0);
        while buf.len() < head_end + length {
            self.fill(&mut buf).await?;
        }
        self.pending = buf.split_off(head_end + length);
        Ok((status, buf.split_off(head_end)))
    }

    async fn fill(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        let mut piece = [0u8; 16 * 1024];
        let n = self.stream.read(&mut piece).await?;
        if n == 0 {
            return Err(BenchError::Http("connection closed mid-answer".into()));
        }
        buf.extend_from_slice(&piece[..n]);
        Ok(())
    }
}
