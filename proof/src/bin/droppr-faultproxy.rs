//! `droppr-faultproxy`: the fault-injecting proxy as a command, for the browser tests. Prints
//! `{"listen": "127.0.0.1:PORT"}` once listening, and the proxy's counters as one JSON line
//! every time it reads a line on standard input and when standard input closes (then it exits).

use std::io::{BufRead, Write};
use std::net::SocketAddr;

use clap::Parser;
use droppr_proof::proxy::{FaultPlan, FaultProxy, Scope};

/// Forward HTTP to a Droppr server on loopback, injecting faults into upload requests.
#[derive(Debug, Parser)]
#[command(name = "droppr-faultproxy", version, about)]
struct Args {
    /// Where the server listens.
    #[arg(long)]
    upstream: SocketAddr,
    /// Where to listen (port 0: the OS picks).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Which requests faults may hit: chunks, or every request to the upload URL.
    #[arg(long, value_enum, default_value = "chunks")]
    scope: ScopeArg,
    /// Share of requests whose connection is dropped mid-body.
    #[arg(long, default_value_t = 0.0)]
    drop_mid_body: f64,
    /// Share of requests whose connection is reset before the answer.
    #[arg(long, default_value_t = 0.0)]
    reset_before_answer: f64,
    /// Share of requests whose answer is lost after the server recorded it.
    #[arg(long, default_value_t = 0.0)]
    lose_answer: f64,
    /// Share of requests answered 502 or 503 by the proxy.
    #[arg(long, default_value_t = 0.0)]
    bad_gateway: f64,
    /// Share of requests held back before forwarding.
    #[arg(long, default_value_t = 0.0)]
    latency: f64,
    /// Longest hold, in milliseconds.
    #[arg(long, default_value_t = 200)]
    max_latency_ms: u64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ScopeArg {
    Chunks,
    UploadApi,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let shares = [
        args.drop_mid_body,
        args.reset_before_answer,
        args.lose_answer,
        args.bad_gateway,
        args.latency,
    ];
    if shares.iter().any(|s| !(0.0..=1.0).contains(s)) || shares.iter().sum::<f64>() > 1.0 {
        return Err("fault shares must lie between 0 and 1 and add up to at most 1".into());
    }
    let plan = FaultPlan {
        seed: args.seed,
        scope: match args.scope {
            ScopeArg::Chunks => Scope::Chunks,
            ScopeArg::UploadApi => Scope::UploadApi,
        },
        drop_mid_body: args.drop_mid_body,
        reset_before_answer: args.reset_before_answer,
        lose_answer: args.lose_answer,
        bad_gateway: args.bad_gateway,
        latency: args.latency,
        max_latency_ms: args.max_latency_ms,
    };
    let proxy = FaultProxy::bind(args.listen, args.upstream, plan)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}",
        serde_json::json!({"listen": proxy.addr().to_string()})
    )?;
    out.flush()?;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let more = matches!(lines.next(), Some(Ok(_)));
        writeln!(out, "{}", serde_json::to_string(&proxy.stats().figures())?)?;
        out.flush()?;
        if !more {
            return Ok(());
        }
    }
}
