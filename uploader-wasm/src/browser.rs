//! The few browser facts the uploader reads: clocks, `navigator.connection`, `navigator.onLine`,
//! `localStorage`, and event listeners owned by guards.
//!
//! Everything is read from `globalThis` by name rather than through `web_sys::window()`, whose
//! search for the global object (four accessors and an `instanceof Window`) is more glue than
//! the uploader's own reads; it also works in a worker.

use droppr_protocol::js_number::u64_from_f64;
use droppr_protocol::network::{EffectiveType, NetworkHints};
use futures::StreamExt;
use js_sys::{Function, Reflect};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// The global object: `window` in a page, `self` in a worker.
    #[wasm_bindgen(thread_local_v2, js_name = globalThis)]
    static GLOBAL: JsValue;
}

/// `globalThis[key]`; `None` when absent or when reading it throws (`localStorage` may).
fn global(key: &str) -> Option<JsValue> {
    GLOBAL.with(|g| get(g, key))
}

/// Milliseconds on a monotonic clock (`performance.now()`), for durations and speeds.
pub fn now_ms() -> f64 {
    global("performance").map_or_else(js_sys::Date::now, |p| {
        p.unchecked_into::<web_sys::Performance>().now()
    })
}

/// Milliseconds since the Unix epoch, for records that outlive the page.
pub fn unix_ms() -> u64 {
    u64_from_f64(js_sys::Date::now().floor()).unwrap_or(0)
}

/// A number in `[0, 1)` for retry jitter.
pub fn jitter() -> f64 {
    js_sys::Math::random()
}

fn get(target: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(target, &JsValue::from_str(key))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

fn navigator() -> Option<JsValue> {
    global("navigator")
}

/// `navigator.connection`, when the browser has one (Chromium; not Firefox or Safari). Read
/// through `Reflect`, so a page (or a test) may present any object with the same fields.
pub fn connection() -> Option<JsValue> {
    get(&navigator()?, "connection")
}

/// What `navigator.connection` says now; empty hints without one.
pub fn network_hints() -> NetworkHints {
    let Some(c) = connection() else {
        return NetworkHints::default();
    };
    NetworkHints {
        effective_type: get(&c, "effectiveType")
            .and_then(|v| v.as_string())
            .and_then(|s| EffectiveType::parse(&s)),
        downlink_mbps: get(&c, "downlink").and_then(|v| v.as_f64()),
        rtt_ms: get(&c, "rtt").and_then(|v| v.as_f64()),
        save_data: get(&c, "saveData")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    }
    .sanitized()
}

/// `crypto.subtle`, only present in secure contexts (HTTPS, `localhost`).
pub fn subtle_crypto() -> Option<web_sys::SubtleCrypto> {
    let crypto = global("crypto")?;
    get(&crypto, "subtle").map(JsCast::unchecked_into)
}

/// 16 bytes from `crypto.getRandomValues` (present in every context, secure or not).
pub fn random_16() -> Option<[u8; 16]> {
    let crypto: web_sys::Crypto = global("crypto")?.unchecked_into();
    let mut bytes = [0u8; 16];
    crypto.get_random_values_with_u8_array(&mut bytes).ok()?;
    Some(bytes)
}

/// `navigator.onLine`; true when unknown.
pub fn is_online() -> bool {
    navigator()
        .and_then(|n| get(&n, "onLine"))
        .and_then(|v| v.as_bool())
        .unwrap_or(true)
}

/// An event listener that is removed when the guard is dropped.
#[must_use = "dropping the guard removes the listener"]
#[derive(Debug)]
pub struct ListenerGuard {
    target: JsValue,
    event: &'static str,
    closure: Closure<dyn FnMut()>,
}

/// Listens for `event` on `target` (anything with `addEventListener`); `None` if it has none.
pub fn listen(
    target: JsValue,
    event: &'static str,
    handler: impl FnMut() + 'static,
) -> Option<ListenerGuard> {
    listen_with(target, event, Box::new(handler))
}

/// [`listen`] for any handler: one copy of this code in the wasm, not one per caller.
fn listen_with(
    target: JsValue,
    event: &'static str,
    handler: Box<dyn FnMut()>,
) -> Option<ListenerGuard> {
    let add = get(&target, "addEventListener")?
        .dyn_into::<Function>()
        .ok()?;
    let closure = Closure::wrap(handler);
    add.call2(&target, &JsValue::from_str(event), closure.as_ref())
        .ok()?;
    Some(ListenerGuard {
        target,
        event,
        closure,
    })
}

/// Listens on the global object (`window`).
pub fn listen_window(
    event: &'static str,
    handler: impl FnMut() + 'static,
) -> Option<ListenerGuard> {
    listen(GLOBAL.with(Clone::clone), event, handler)
}

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        if let Some(remove) =
            get(&self.target, "removeEventListener").and_then(|f| f.dyn_into::<Function>().ok())
        {
            // A target that refuses leaves a listener whose closure is gone: calling it would
            // throw in the page, so there is nothing better to do than try.
            let _ = remove.call2(
                &self.target,
                &JsValue::from_str(self.event),
                self.closure.as_ref(),
            );
        }
    }
}

/// Resolves when the browser says it is online again (the `online` event); at once if it is.
pub async fn online() {
    if is_online() {
        return;
    }
    // The upload's own event channel type: one channel type less in the wasm than a oneshot.
    let (tx, mut rx) = crate::events::channel();
    let _guard = listen_window("online", move || {
        crate::events::notify(&tx, crate::events::Event::Online);
    });
    // Without a global to listen on there is nothing to wait for.
    if _guard.is_some() {
        let _ = rx.next().await;
    }
}

/// `localStorage`, when the page may use it (not in some private modes or sandboxed frames).
/// Every failure means "no resume", never a failed upload.
pub mod storage {
    use wasm_bindgen::JsCast;

    fn local() -> Option<web_sys::Storage> {
        super::global("localStorage").map(JsCast::unchecked_into)
    }

    pub fn get(key: &str) -> Option<String> {
        local()?.get_item(key).ok().flatten()
    }

    pub fn set(key: &str, value: &str) {
        if let Some(s) = local() {
            // Quota exceeded: the upload goes on, only resuming it after a reload will not work.
            let _ = s.set_item(key, value);
        }
    }

    pub fn remove(key: &str) {
        if let Some(s) = local() {
            let _ = s.remove_item(key);
        }
    }

    /// Every key that starts with `prefix`.
    pub fn keys_with_prefix(prefix: &str) -> Vec<String> {
        let Some(s) = local() else {
            return Vec::new();
        };
        let count = s.length().unwrap_or(0);
        (0..count)
            .filter_map(|i| s.key(i).ok().flatten())
            .filter(|k| k.starts_with(prefix))
            .collect()
    }
}
