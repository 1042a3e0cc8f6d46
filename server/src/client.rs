//! Who the client is: the one place that decides which address a request comes from.
//!
//! By default the peer address of the TCP connection is the client, and forwarding headers are
//! ignored: anyone can write `X-Forwarded-For`. Behind a reverse proxy every request comes from
//! the proxy, so `--trusted-proxies` lists the proxies (CIDRs) whose forwarding header is believed.
//! The header is read from the right (the hop nearest this server) to the left, skipping trusted
//! proxies; the first address that is not a trusted proxy is the client. Entries further left
//! were written by the client itself and are never believed.
//!
//! Limits and lockouts count per [`ClientKey`]: an IPv4 address, or the /64 network of an IPv6
//! address (one subscriber usually holds a whole /64, so counting single IPv6 addresses would
//! give each of them 2^64 budgets).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use actix_web::http::header::HeaderMap;
use actix_web::HttpRequest;
use ipnet::IpNet;

/// The proxies whose forwarding header names the client (`--trusted-proxies`); none by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// A comma-separated list of CIDRs or single addresses; empty means none.
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                IpNet::from_str(s)
                    .or_else(|_| IpAddr::from_str(s).map(IpNet::from))
                    .map_err(|_| format!("'{s}' is not an IP address or CIDR"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// Which forwarding header the trusted proxies write (`--forwarded-header`). Only one is read:
/// a proxy that writes one passes the other through from the client untouched, forgeable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

/// How to find the client of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientPolicy {
    pub trusted_proxies: TrustedProxies,
    pub header: ForwardedHeader,
}

/// The client of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId {
    addr: IpAddr,
}

/// What limits and lockouts count by: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientId {
    /// The client of an actix request under `policy`.
    pub fn from_request(req: &HttpRequest, policy: &ClientPolicy) -> Self {
        // Actix always knows the peer of a TCP connection; only a test request lacks one.
        let peer = req
            .peer_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        Self::from_parts(peer, req.headers(), policy)
    }

    /// The client given the peer address and the request headers.
    pub fn from_parts(peer: IpAddr, headers: &HeaderMap, policy: &ClientPolicy) -> Self {
        let mut current = canonical(peer);
        if !policy.trusted_proxies.contains(current) {
            return Self { addr: current };
        }
        let hops = forwarded_hops(headers, policy.header);
        for hop in hops.iter().rev() {
            match hop {
                // A trusted proxy wrote this entry: it names who connected to that proxy.
                Some(ip) => current = canonical(*ip),
                // "unknown" or garbage: the client cannot be told apart from its proxy.
                None => break,
            }
            if !policy.trusted_proxies.contains(current) {
                break;
            }
        }
        Self { addr: current }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn key(&self) -> ClientKey {
        match self.addr {
            IpAddr::V4(_) => ClientKey(self.addr),
            IpAddr::V6(v6) => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                ClientKey(IpAddr::V6(Ipv6Addr::from(octets)))
            }
        }
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr.fmt(f)
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket reports) are IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The addresses a forwarding header lists, left (farthest) to right (nearest); `None` for an
/// entry that is not an address. Repeated header lines form one list, in order.
fn forwarded_hops(headers: &HeaderMap, which: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let name = match which {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    let mut hops = Vec::new();
    for value in headers.get_all(name) {
        let Ok(value) = value.to_str() else {
            hops.push(None);
            continue;
        };
        for element in value.split(',') {
            hops.push(match which {
                ForwardedHeader::XForwardedFor => parse_node(element),
                ForwardedHeader::Forwarded => forwarded_for(element),
            });
        }
    }
    hops
}

/// The `for=` parameter of one RFC 7239 element (`for=192.0.2.1;proto=https`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_node(value))
            .flatten()
    })
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]:4711`, optionally in double quotes.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = IpAddr::from_str(text) {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return IpAddr::from_str(rest.split(']').next()?).ok();
    }
    let (host, port) = text.rsplit_once(':')?;
    port.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| IpAddr::from_str(host).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_str(name).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn policy(proxies: &str, header: ForwardedHeader) -> ClientPolicy {
        ClientPolicy {
            trusted_proxies: TrustedProxies::parse(proxies).unwrap(),
            header,
        }
    }

    fn client(peer: &str, pairs: &[(&str, &str)], policy: &ClientPolicy) -> String {
        ClientId::from_parts(peer.parse().unwrap(), &headers(pairs), policy).to_string()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let none = ClientPolicy::default();
        let xff = [("x-forwarded-for", "203.0.113.9")];
        assert_eq!(client("192.0.2.1", &xff, &none), "192.0.2.1");
        // A peer outside the trusted list is the client too, whatever it forwards.
        let p = policy("10.0.0.0/8", ForwardedHeader::XForwardedFor);
        assert_eq!(client("192.0.2.1", &xff, &p), "192.0.2.1");
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let p = policy("10.0.0.0/8, 127.0.0.1", ForwardedHeader::XForwardedFor);
        // The client wrote the leftmost entry itself: never believed.
        let spoofed = [("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.1.1.1")];
        assert_eq!(client("127.0.0.1", &spoofed, &p), "203.0.113.9");
        // Repeated header lines are one list.
        let split = [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "203.0.113.9:5555"),
        ];
        assert_eq!(client("10.0.0.2", &split, &p), "203.0.113.9");
        // Only trusted hops: the farthest one is the best we know.
        let all = [("x-forwarded-for", "10.9.9.9, 10.1.1.1")];
        assert_eq!(client("127.0.0.1", &all, &p), "10.9.9.9");
        // Garbage from a trusted hop: stop at that proxy.
        let junk = [("x-forwarded-for", "203.0.113.9, unknown")];
        assert_eq!(client("127.0.0.1", &junk, &p), "127.0.0.1");
        // No header at all.
        assert_eq!(client("127.0.0.1", &[], &p), "127.0.0.1");
    }

    #[test]
    fn rfc7239_forwarded_is_read_only_when_chosen() {
        let p = policy("127.0.0.1/32", ForwardedHeader::Forwarded);
        let fwd = [(
            "forwarded",
            r#"for=198.51.100.1;proto=https, For="[2001:db8:cafe::17]:4711";by=x"#,
        )];
        assert_eq!(client("127.0.0.1", &fwd, &p), "2001:db8:cafe::17");
        let xff = [("x-forwarded-for", "203.0.113.9")];
        assert_eq!(client("127.0.0.1", &xff, &p), "127.0.0.1");
    }

    #[test]
    fn keys_group_ipv6_by_64_and_unmap_ipv4() {
        let p = ClientPolicy::default();
        let a = ClientId::from_parts("2001:db8:1:2::1".parse().unwrap(), &HeaderMap::new(), &p);
        let b = ClientId::from_parts(
            "2001:db8:1:2:ffff::9".parse().unwrap(),
            &HeaderMap::new(),
            &p,
        );
        assert_ne!(a, b);
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().to_string(), "2001:db8:1:2::/64");
        let mapped =
            ClientId::from_parts("::ffff:192.0.2.7".parse().unwrap(), &HeaderMap::new(), &p);
        assert_eq!(mapped.to_string(), "192.0.2.7");
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("").unwrap().is_empty());
    }
}
