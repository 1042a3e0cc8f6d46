//! `GET /healthz` (liveness: the process answers) and `GET /readyz` (readiness: the metadata store
//! answers a real query in time and the data and files directories have the configured free space).

use std::path::Path;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::routes::AppState;

/// How long the metadata store may take to answer the readiness query.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// A session id that no session has.
const PROBE_ID: &str = "readiness-probe";

/// One readiness check.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let config = state.uploads.config.clone();
    let mut checks = vec![metadata_check(&state).await];
    for (name, dir) in [
        ("data-dir", &config.data_dir),
        ("files-dir", &config.files_dir),
    ] {
        checks.push(space_check(name, dir, config.resources.min_free_space));
    }
    let ready = checks.iter().all(|c| c.ok);
    for c in checks.iter().filter(|c| !c.ok) {
        tracing::warn!(check = c.name, detail = %c.detail, "not ready");
    }
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not-ready" },
        "checks": checks,
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Real queries against the metadata store, with a deadline: a session lookup, and a write
/// transaction that changes nothing (it deletes a session id no session can have: real ids are
/// 22 characters), so a store that cannot take writes (locked, read-only, broken) is not ready.
async fn metadata_check(state: &AppState) -> Check {
    let meta = state.uploads.meta.clone();
    let query = web::block(move || {
        meta.session(PROBE_ID)?;
        meta.delete_session(PROBE_ID)
    });
    let detail = match tokio::time::timeout(STORE_TIMEOUT, query).await {
        Ok(Ok(Ok(_))) => {
            return Check {
                name: "metadata",
                ok: true,
                detail: "answered".into(),
            }
        }
        Ok(Ok(Err(e))) => format!("query failed: {e}"),
        Ok(Err(e)) => format!("query task failed: {e}"),
        Err(_) => format!("no answer within {} s", STORE_TIMEOUT.as_secs()),
    };
    Check {
        name: "metadata",
        ok: false,
        detail,
    }
}

fn space_check(name: &'static str, dir: &Path, min_free: u64) -> Check {
    match rustix::fs::statvfs(dir) {
        Ok(st) => {
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            Check {
                name,
                ok: free >= min_free,
                detail: format!("{free} bytes free (at least {min_free} wanted)"),
            }
        }
        Err(e) => Check {
            name,
            ok: false,
            detail: format!("{}: {e}", dir.display()),
        },
    }
}
