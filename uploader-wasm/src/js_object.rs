//! Plain JS objects of strings (headers, metadata), read and written with one loop each: a
//! `BTreeMap` through serde costs kilobytes of wasm for what `Object.entries` already does.

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::prelude::*;

/// The string entries of a plain object, in its order; `undefined` and `null` values are left
/// out (so `{'X-Request-Password': password}` works without a password). `undefined` or `null`
/// itself is empty; `None` when it is not an object or a value is not a string.
pub fn string_entries(value: &JsValue) -> Option<Vec<(String, String)>> {
    if value.is_undefined() || value.is_null() {
        return Some(Vec::new());
    }
    let object = value.dyn_ref::<Object>()?;
    let mut out = Vec::new();
    for entry in Object::entries(object).iter() {
        let entry: Array = entry.unchecked_into();
        let value = entry.get(1);
        if value.is_undefined() || value.is_null() {
            continue;
        }
        out.push((entry.get(0).as_string()?, value.as_string()?));
    }
    Some(out)
}

/// A plain object with these string properties.
pub fn from_entries(entries: &[(String, String)]) -> Object {
    let object = Object::new();
    for (key, value) in entries {
        // Setting a property of a fresh plain object cannot fail.
        let _ = Reflect::set(&object, &JsValue::from_str(key), &JsValue::from_str(value));
    }
    object
}
