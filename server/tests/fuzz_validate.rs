//! The server's parsers of names, paths, extension lists and first bytes (`validate.rs`), fed
//! generated input (proptest, bounded cases). A cleaned path never leaves the folder it is
//! joined to, cleaning is idempotent, and nothing panics on any input.

use std::path::{Component, Path};

use droppr_server::validate::{
    check_content, check_extension, check_name, parse_extensions, sniff, RelPath,
};
use proptest::prelude::*;

/// Path-like text: separators, dots, drive letters, controls and non-ASCII are common.
fn path_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a./\\\\:  \u{0}\u{7}\u{7f}\u{85}\u{e9}\u{202e}-]{0,30}",
        "(\\.\\.|\\.|[a-z]{1,3}|C:|/|\\\\){0,12}",
        ".{0,300}",
        "[a-z]{250,260}(/[a-z]{1,3}){0,3}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

    #[test]
    fn cleaned_paths_stay_inside_their_folder(raw in path_like()) {
        let Ok(path) = RelPath::parse(&raw) else { return Ok(()) };
        let s = path.as_str();
        prop_assert!(!s.is_empty() && s.len() <= 1024);
        prop_assert!(!s.starts_with('/') && !s.contains('\\') && !s.chars().any(char::is_control));
        for part in s.split('/') {
            prop_assert!(!part.is_empty() && part != "." && part != ".." && part.len() <= 255, "{:?}", s);
            prop_assert!(!(part.len() == 2 && part.ends_with(':')), "drive letter in {:?}", s);
        }
        // Joined to a folder, only plain names follow it: no root, no parent, no prefix.
        let joined = Path::new("/srv/files/folder").join(s);
        prop_assert!(joined.starts_with("/srv/files/folder"));
        prop_assert!(joined.components().skip(4).all(|c| matches!(c, Component::Normal(_))), "{:?}", joined);
        // Cleaning is idempotent, and the name and parent are what the path says.
        prop_assert_eq!(RelPath::parse(s).ok(), Some(path.clone()));
        let rebuilt = match path.parent() {
            Some(p) => format!("{p}/{}", path.file_name()),
            None => path.file_name().to_owned(),
        };
        prop_assert_eq!(rebuilt, s);
        // Portable names: nothing that reads differently, no trailing dot or space, room for a suffix.
        if check_name(&path, false).is_ok() {
            prop_assert!(path.file_name().len() < 255);
            for part in s.split('/') {
                prop_assert!(!part.ends_with('.') && !part.ends_with(' ') && !part.contains(['<', '>', ':', '"', '|', '?', '*', '\u{202e}']), "{:?}", s);
            }
        }
        prop_assert!(check_name(&path, true).is_ok() || path.file_name().len() > 240);
        if let Some(ext) = path.extension() {
            prop_assert!(!ext.is_empty() && ext == ext.to_ascii_lowercase());
        }
    }

    #[test]
    fn extension_lists_and_checks_never_panic(
        items in prop::collection::vec("[ .*a-zA-Z0-9\u{e9}-]{0,8}", 0..6),
        name in "[a-z]{1,5}(\\.[a-zA-Z0-9]{0,4}){0,2}",
    ) {
        if let Ok(list) = parse_extensions(&items) {
            prop_assert!(!list.is_empty());
            prop_assert!(list.iter().all(|e| e == "*" || (e.bytes().all(|b| b.is_ascii_alphanumeric()) && *e == e.to_ascii_lowercase())));
            let path = RelPath::parse(&name).expect("generated names are valid");
            let allowed = check_extension(&path, &list).is_ok();
            let star = list.iter().any(|e| e == "*");
            prop_assert_eq!(allowed, star || path.extension().is_some_and(|e| list.contains(&e)));
        }
    }

    #[test]
    fn sniffing_any_bytes_never_panics(head in prop::collection::vec(any::<u8>(), 0..40), ext in "[a-z0-9]{1,4}") {
        let kind = sniff(&head);
        let _ = kind.mime();
        let path = RelPath::parse(&format!("f.{ext}")).expect("a plain name");
        let everything = ["*".to_owned()];
        prop_assert!(check_content(&path, &everything, &head).is_ok());
        let _ = check_content(&path, std::slice::from_ref(&ext), &head);
    }
}
