//! docs/PROTOCOL.md and the uploader's TypeScript types list exactly the error codes the server can
//! send, with their statuses.

use std::collections::BTreeSet;

use droppr_protocol::wire::ErrorCode;

#[test]
fn the_protocol_document_lists_exactly_the_error_codes() {
    let doc = include_str!("../../docs/PROTOCOL.md");
    let documented: BTreeSet<(u16, String)> = doc
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let status = cells.get(1)?.parse().ok()?;
            let code = cells.get(2)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((status, code.to_owned()))
        })
        .collect();
    let defined: BTreeSet<(u16, String)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.status(), c.as_str().to_owned()))
        .collect();
    assert_eq!(documented, defined);
}

#[test]
fn every_defined_code_is_sent_somewhere_in_the_server() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        sources += &std::fs::read_to_string(entry.unwrap().path()).unwrap();
    }
    for code in ErrorCode::ALL {
        let variant = format!("ErrorCode::{code:?}");
        assert!(
            sources.contains(&variant),
            "{variant} is defined but never sent"
        );
    }
}

#[test]
fn the_uploaders_typescript_union_lists_exactly_the_error_codes() {
    let source = include_str!("../../uploader-wasm/src/lib.rs");
    let start = source
        .find("export type ServerErrorCode =")
        .expect("the ServerErrorCode union in uploader-wasm/src/lib.rs");
    let union = &source[start..];
    let union = &union[..union.find(';').expect("the union ends with ';'")];
    let listed: BTreeSet<&str> = union.split('\'').skip(1).step_by(2).collect();
    let defined: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(listed, defined);
}
