//! Delivery of recorded upload events to the configured hooks: an HTTP POST signed with
//! HMAC-SHA256, and/or a shell command with the event on its standard input. Failed deliveries
//! are retried from the [`Outbox`] with exponential backoff until the give-up age; success is
//! a 2xx answer or an exit status of 0.
//!
//! Headers of a webhook request: `Content-Type: application/json`, `X-Droppr-Event` (the type),
//! `X-Droppr-Event-Id`, `X-Droppr-Delivery-Attempt` (1 for the first) and
//! `X-Droppr-Signature: sha256=HEX`, the HMAC-SHA256 of the raw body under the webhook secret.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

use crate::config::{HookConfig, Webhook};
use crate::metrics::Metrics;
use crate::outbox::{now_ms, Outbox, Pending, Target};

/// Events delivered per round before the loop looks again at what is due.
const BATCH: u32 = 32;
/// Longest sleep of the loop when nothing is due (an event recorded meanwhile wakes it).
const IDLE: Duration = Duration::from_secs(60);
/// Delivered events are remembered this long after the session TTL, so that recording one again
/// (start-up requeue) does not deliver it twice.
const REMEMBER_EXTRA: Duration = Duration::from_secs(24 * 3600);

/// `sha256=` + hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// The wait before retry number `attempts` (1 = the first retry): doubling from the initial
/// wait, capped.
pub fn backoff(hooks: &HookConfig, attempts: u32) -> Duration {
    let factor = 2f64.powi(
        i32::try_from(attempts.saturating_sub(1))
            .unwrap_or(i32::MAX)
            .min(60),
    );
    hooks
        .retry_initial
        .mul_f64(factor.min(1e9))
        .min(hooks.retry_max)
}

/// Delivers due events until the process ends.
pub async fn deliver_forever(
    outbox: Arc<Outbox>,
    hooks: HookConfig,
    metrics: Arc<Metrics>,
    remember: Duration,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(hooks.timeout))
        .http_status_as_error(false)
        .user_agent(concat!("droppr-server/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let remember_ms = i64::try_from((remember + REMEMBER_EXTRA).as_millis()).unwrap_or(i64::MAX);
    loop {
        let o = outbox.clone();
        let due = tokio::task::spawn_blocking(move || o.due(now_ms(), BATCH)).await;
        match due {
            Ok(Ok(due)) => {
                for pending in due {
                    let result = attempt(&agent, &hooks, &pending).await;
                    settle(&outbox, &hooks, &metrics, &pending, result).await;
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "hook outbox unreadable"),
            Err(e) => tracing::error!(error = %e, "hook outbox task failed"),
        }
        let o = outbox.clone();
        let next = tokio::task::spawn_blocking(move || {
            let _ = o.prune(now_ms().saturating_sub(remember_ms));
            o.next_due()
        })
        .await;
        // A shared outbox also holds what other instances record (and claims of instances that
        // died): look at it again at least every poll.
        let idle = outbox.poll().unwrap_or(IDLE);
        let wait = match next {
            Ok(Ok(Some(at))) => {
                Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0)).min(idle)
            }
            _ => idle,
        };
        if wait > Duration::ZERO {
            tokio::select! {
                () = outbox.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// One delivery attempt.
async fn attempt(agent: &ureq::Agent, hooks: &HookConfig, p: &Pending) -> Result<(), String> {
    match p.target {
        Target::Webhook => {
            let Some(webhook) = hooks.webhook.clone() else {
                return Err("no webhook configured".to_owned());
            };
            let (agent, p) = (agent.clone(), p.clone());
            tokio::task::spawn_blocking(move || post(&agent, &webhook, &p))
                .await
                .map_err(|e| e.to_string())?
        }
        Target::Command => match &hooks.command {
            Some(command) => run_command(command, p, hooks.timeout).await,
            None => Err("no hook command configured".to_owned()),
        },
    }
}

/// Records how an attempt went.
async fn settle(
    outbox: &Arc<Outbox>,
    hooks: &HookConfig,
    metrics: &Metrics,
    p: &Pending,
    result: Result<(), String>,
) {
    let now = now_ms();
    let hook = p.target.as_str();
    let attempt = p.attempts + 1;
    let (o, row) = (outbox.clone(), p.row);
    let recorded = match result {
        Ok(()) => {
            metrics.hook_delivery(hook, "delivered");
            tracing::info!(event = %p.event_id, kind = %p.kind, hook, attempt, "hook delivered");
            tokio::task::spawn_blocking(move || o.delivered(row, now)).await
        }
        Err(error) => {
            let age = Duration::from_millis(u64::try_from(now - p.created_at).unwrap_or(0));
            let give_up = age >= hooks.give_up_after;
            let wait = i64::try_from(backoff(hooks, attempt).as_millis()).unwrap_or(i64::MAX);
            if give_up {
                metrics.hook_delivery(hook, "gave-up");
                tracing::error!(event = %p.event_id, kind = %p.kind, hook, attempt, %error, "hook delivery given up");
            } else {
                metrics.hook_delivery(hook, "failed");
                tracing::warn!(event = %p.event_id, kind = %p.kind, hook, attempt, %error, retry_in_ms = wait, "hook delivery failed");
            }
            tokio::task::spawn_blocking(move || {
                o.failed(row, &error, now.saturating_add(wait), give_up)
            })
            .await
        }
    };
    let error = match recorded {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::error!(event = %p.event_id, %error, "hook outcome not recorded; it may be delivered again");
}

/// POSTs the event. Blocking.
fn post(agent: &ureq::Agent, webhook: &Webhook, p: &Pending) -> Result<(), String> {
    let answer = agent
        .post(&webhook.url)
        .header("content-type", "application/json")
        .header("x-droppr-event", &p.kind)
        .header("x-droppr-event-id", &p.event_id)
        .header("x-droppr-delivery-attempt", (p.attempts + 1).to_string())
        .header(
            "x-droppr-signature",
            signature(&webhook.secret, p.body.as_bytes()),
        )
        .send(p.body.as_bytes())
        .map_err(|e| e.to_string())?;
    if answer.status().is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered {}", answer.status()))
    }
}

/// Runs the hook command through `/bin/sh -c` with the event on stdin and `DROPPR_EVENT`,
/// `DROPPR_EVENT_ID` set; none of the server's own `DROPPR_*` settings (secrets) reach it.
async fn run_command(command: &str, p: &Pending, timeout: Duration) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(command);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("DROPPR_") {
            cmd.env_remove(name);
        }
    }
    let mut child = cmd
        .env("DROPPR_EVENT", &p.kind)
        .env("DROPPR_EVENT_ID", &p.event_id)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run the hook command: {e}"))?;
    let body = p.body.clone();
    let mut stdin = child.stdin.take();
    let run = async move {
        if let Some(stdin) = stdin.as_mut() {
            // A command that does not read its input is its own business.
            let _ = stdin.write_all(body.as_bytes()).await;
        }
        drop(stdin);
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| format!("the hook command took longer than {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr.trim().chars().take(300).collect();
        Err(format!(
            "the hook command exited with {}: {tail}",
            output.status
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_the_rfc_4231_hmac() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let hooks = HookConfig {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            ..HookConfig::default()
        };
        let waits: Vec<u64> = (1..=6).map(|n| backoff(&hooks, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(&hooks, u32::MAX).as_secs(), 10);
    }
}
