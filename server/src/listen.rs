//! The listening socket and the HTTP/1 service on it, with one thing actix-web's `HttpServer`
//! cannot do: answer the HTTP layer's own refusals as `{error, code}` JSON.
//!
//! Before a request exists, actix-http's dispatcher answers by itself, with an empty body: 400 for a
//! head it cannot parse, 408 when the first head does not arrive within the request timeout, and
//! 431 for a head over 128 KiB or with more than 96 headers. It offers no hook for these answers,
//! so each connection's socket is wrapped in [`JsonRefusals`], which recognises such an answer as
//! the dispatcher writes it (one of those three statuses with `content-length: 0`; the app itself
//! never answers an error without a JSON body, see `error::json_errors`) and writes a JSON answer
//! in its place. Everything else passes through untouched, byte for byte.
//!
//! It also caps the connections one client address holds open ([`Connections`]): a request head
//! that never finishes is cut after 5 s, but a client could open thousands of them in that time
//! and take the process's file descriptors from everyone else.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix_http::error::DispatchError;
use actix_http::{HttpService, KeepAlive};
use actix_server::{Server, ServerBuilder};
use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::http::header::HeaderMap;
use droppr_protocol::wire::{ErrorBody, ErrorCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::client::{ClientId, ClientKey, ClientPolicy};
use crate::routes::AppState;

/// How long the first request's head may take to arrive (actix-web's default too).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle keep-alive connection is closed after this long.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How long a closing connection may take to shut down cleanly.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pending connections the kernel keeps for us (actix-web's default).
const BACKLOG: u32 = 1024;

/// How the server runs: worker threads, the graceful-shutdown grace period, and the cap on
/// connections per client address (0 = none; trusted proxies are never capped).
#[derive(Debug, Clone)]
pub struct Listen {
    pub bind: SocketAddr,
    pub workers: usize,
    pub shutdown_timeout: Duration,
    pub max_connections_per_client: u64,
    pub clients: ClientPolicy,
}

/// Binds `listen.bind` and serves the app on it. Returns the server (not yet polled) and the
/// address it listens on.
pub fn serve(listen: &Listen, state: AppState) -> io::Result<(Server, SocketAddr)> {
    let refusals = Arc::new(Refusals::new(HEAD_TIMEOUT));
    let connections = Connections::new(listen.max_connections_per_client, listen.clients.clone());
    let mut builder = ServerBuilder::new()
        .workers(listen.workers)
        .backlog(BACKLOG)
        .shutdown_timeout(listen.shutdown_timeout.as_secs());
    let shutdown = builder.graceful_shutdown_signal();
    let std_listener = std::net::TcpListener::bind(listen.bind)?;
    let addr = std_listener.local_addr()?;
    builder = builder.listen("droppr-http", std_listener, move || {
        let refusals = refusals.clone();
        let connections = connections.clone();
        let shutdown = shutdown.clone();
        let app = crate::app(state.clone())
            .into_factory()
            .map_err(|err| err.error_response());
        let http = HttpService::build()
            .graceful_shutdown_signal(move || {
                let signal = shutdown.clone();
                async move { signal.notified().await }
            })
            .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
            .client_request_timeout(HEAD_TIMEOUT)
            .client_disconnect_timeout(DISCONNECT_TIMEOUT)
            .local_addr(addr)
            // Only a request without a `Host` header would see the default's host name; nothing
            // here builds URLs from it (the public URL is configured).
            .h1(map_config(app, |()| AppConfig::default()));
        fn_service(move |io: TcpStream| {
            let refusals = refusals.clone();
            let connections = connections.clone();
            async move {
                let peer = io.peer_addr().ok();
                let slot = match connections.enter(peer) {
                    Ok(slot) => slot,
                    Err(key) => return Err(refuse_connection(io, key, &refusals).await),
                };
                Ok((JsonRefusals::new(io, refusals, peer, slot), peer))
            }
        })
        .and_then(http)
    })?;
    Ok((builder.run(), addr))
}

/// Open connections per client address.
#[derive(Debug, Clone)]
pub struct Connections {
    limit: u64,
    clients: ClientPolicy,
    open: Arc<Mutex<HashMap<ClientKey, u64>>>,
}

/// One open connection, counted until it is dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    open: Arc<Mutex<HashMap<ClientKey, u64>>>,
    key: ClientKey,
}

impl Connections {
    pub fn new(limit: u64, clients: ClientPolicy) -> Self {
        Connections {
            limit,
            clients,
            open: Arc::default(),
        }
    }

    /// Counts a new connection from `peer` in: `Ok(None)` when it is not counted (no cap, no
    /// address, or a trusted proxy), `Err(key)` when its client is at the cap.
    pub fn enter(&self, peer: Option<SocketAddr>) -> Result<Option<ConnectionSlot>, ClientKey> {
        let Some(peer) = peer else { return Ok(None) };
        if self.limit == 0 || self.clients.trusted_proxies.contains(peer.ip()) {
            return Ok(None);
        }
        let key = ClientId::from_parts(peer.ip(), &HeaderMap::new(), &self.clients).key();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(key).or_default();
        if *n >= self.limit {
            return Err(key);
        }
        *n += 1;
        Ok(Some(ConnectionSlot {
            open: self.open.clone(),
            key,
        }))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Answers a connection over its client's cap with `429 rate-limited` and closes it. The answer
/// is written without reading the request (a client that already sent one may see the close as
/// a reset instead).
async fn refuse_connection(io: TcpStream, key: ClientKey, refusals: &Refusals) -> DispatchError {
    tracing::info!(
        target: "droppr::http",
        status = 429,
        code = ErrorCode::RateLimited.as_str(),
        client = %key,
        "refused a connection over the per-client cap"
    );
    let answer = &refusals.too_many_connections;
    let written = match tokio::time::timeout(DISCONNECT_TIMEOUT, io.writable()).await {
        Ok(Ok(())) => io.try_write(answer),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    };
    DispatchError::Io(written.err().unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::ConnectionRefused, "over the connection cap")
    }))
}

/// The JSON answers that replace the dispatcher's empty ones, and the one for a connection over
/// its client's cap.
#[derive(Debug)]
pub struct Refusals {
    bad_head: String,
    head_timeout: String,
    head_too_large: String,
    /// A whole answer (head and body) for a connection over its client's cap.
    too_many_connections: Vec<u8>,
}

impl Refusals {
    fn new(head_timeout: Duration) -> Self {
        let body = |code: ErrorCode, error: String| {
            serde_json::to_string(&ErrorBody {
                error,
                code,
                offset: None,
            })
            .unwrap_or_default()
        };
        Refusals {
            bad_head: body(
                ErrorCode::BadHead,
                "The request head is not valid HTTP/1.1.".to_owned(),
            ),
            head_timeout: body(
                ErrorCode::HeadTimeout,
                format!(
                    "The request head did not arrive within {} s.",
                    head_timeout.as_secs()
                ),
            ),
            head_too_large: body(
                ErrorCode::HeadTooLarge,
                "The request head is over 128 KiB or has more than 96 headers.".to_owned(),
            ),
            too_many_connections: {
                let json = body(
                    ErrorCode::RateLimited,
                    "This address has too many connections open; close some and try again."
                        .to_owned(),
                );
                format!(
                    "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
                     cache-control: no-store\r\nretry-after: 1\r\nconnection: close\r\n\
                     content-length: {}\r\n\r\n{json}",
                    json.len()
                )
                .into_bytes()
            },
        }
    }

    /// The JSON body for an empty answer with this status, if it is one of the three.
    fn body_for(&self, status: u16) -> Option<(ErrorCode, &str)> {
        match status {
            400 => Some((ErrorCode::BadHead, &self.bad_head)),
            408 => Some((ErrorCode::HeadTimeout, &self.head_timeout)),
            431 => Some((ErrorCode::HeadTooLarge, &self.head_too_large)),
            _ => None,
        }
    }

    /// If `out` starts with a whole response head that is one of the dispatcher's empty refusals,
    /// the answer to write instead and how many bytes of `out` it stands for.
    fn replace(&self, out: &[u8]) -> Option<(ErrorCode, Vec<u8>, usize)> {
        // Every answer's head passes here: look at the status digits before parsing anything.
        let status = out.get(..12)?;
        if !status.starts_with(b"HTTP/1.") || !matches!(&status[9..], b"400" | b"408" | b"431") {
            return None;
        }
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut head = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head_len) = head.parse(out).ok()? else {
            return None;
        };
        let (code, body) = self.body_for(head.code?)?;
        let empty = head
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-length") && h.value.trim_ascii() == b"0");
        if !empty {
            return None;
        }
        let mut answer = format!(
            "HTTP/1.{} {} {}\r\n",
            head.version?,
            code.status(),
            head.reason.unwrap_or("")
        )
        .into_bytes();
        for h in head.headers.iter().filter(|h| {
            !h.name.eq_ignore_ascii_case("content-length")
                && !h.name.eq_ignore_ascii_case("content-type")
        }) {
            answer.extend_from_slice(h.name.as_bytes());
            answer.extend_from_slice(b": ");
            answer.extend_from_slice(h.value);
            answer.extend_from_slice(b"\r\n");
        }
        let extra = format!(
            "content-type: application/json\r\ncache-control: no-store\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        answer.extend_from_slice(extra.as_bytes());
        answer.extend_from_slice(body.as_bytes());
        Some((code, answer, head_len))
    }
}

/// A connection's socket; see the module's documentation.
#[derive(Debug)]
pub struct JsonRefusals<T> {
    io: T,
    refusals: Arc<Refusals>,
    peer: Option<SocketAddr>,
    /// Counts this connection against its client's cap until it closes.
    _slot: Option<ConnectionSlot>,
    /// A replacement answer being written: its bytes, how many are out, and how many of the
    /// dispatcher's bytes it stands for (reported once it is all written).
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl<T> JsonRefusals<T> {
    pub fn new(
        io: T,
        refusals: Arc<Refusals>,
        peer: Option<SocketAddr>,
        slot: Option<ConnectionSlot>,
    ) -> Self {
        JsonRefusals {
            io,
            refusals,
            peer,
            _slot: slot,
            replacing: None,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonRefusals<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonRefusals<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none() {
            let Some((code, answer, stands_for)) = this.refusals.replace(buf) else {
                return Pin::new(&mut this.io).poll_write(cx, buf);
            };
            tracing::info!(
                target: "droppr::http",
                status = code.status(),
                code = code.as_str(),
                peer = %this.peer.map_or_else(|| "-".to_owned(), |p| p.ip().to_string()),
                "refused before routing"
            );
            this.replacing = Some((answer, 0, stands_for));
        }
        let Some((answer, written, stands_for)) = this.replacing.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while *written < answer.len() {
            let n = ready!(Pin::new(&mut this.io).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let stands_for = *stands_for;
        this.replacing = None;
        Poll::Ready(Ok(stands_for))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusals() -> Refusals {
        Refusals::new(HEAD_TIMEOUT)
    }

    fn split(answer: &[u8]) -> (String, serde_json::Value) {
        let text = std::str::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_owned(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn the_dispatchers_empty_431_becomes_json() {
        let out = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\ndate: Sun, 29 Nov 2026 01:00:00 GMT\r\n\r\n";
        let (code, answer, stands_for) = refusals().replace(out).unwrap();
        assert_eq!(code, ErrorCode::HeadTooLarge);
        assert_eq!(stands_for, out.len());
        let (head, body) = split(&answer);
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("connection: close"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, answer.len() - head.len() - 4);
        assert_eq!(body["code"], "head-too-large");
    }

    #[test]
    fn only_a_whole_empty_head_with_one_of_the_three_statuses_is_replaced() {
        let r = refusals();
        for out in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 31\r\n\r\n{\"error\":\"x\",\"code\":\"bad-range\"}"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n",
            b"some body bytes HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert!(r.replace(out).is_none(), "{}", String::from_utf8_lossy(out));
        }
        let (code, ..) = r
            .replace(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
        assert_eq!(code, ErrorCode::HeadTimeout);
    }
}
