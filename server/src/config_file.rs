//! `--config FILE`: a TOML file of defaults whose keys are the long flag names, with `-` or `_`
//! (`data-dir = "/srv/droppr"`, `webhook_secret = "..."`, `log-format = "json"`).
//!
//! Precedence, highest first: command-line flags, `DROPPR_*` variables, the file, built-in
//! defaults. The file is applied by handing clap its values as flags for exactly the options
//! that the command line and the environment left at their defaults, so every value goes through
//! the same parser and validation as a flag, and options added later need no code here.
//!
//! A key that names no option of any subcommand is an error (a typo must not be ignored); a key
//! that belongs to another subcommand (`folder` while serving) is skipped, so one file serves the
//! whole binary.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use crate::config::{Cli, ConfigError};

/// Parses the process's arguments, applying the config file if one is named. `--help`,
/// `--version` and command-line errors exit the process as clap does.
pub fn parse() -> Result<Cli, ConfigError> {
    parse_from(std::env::args_os().collect())
}

/// [`parse`] for the given arguments (the first one is the program name).
pub fn parse_from(args: Vec<OsString>) -> Result<Cli, ConfigError> {
    let command = Cli::command();
    let matches = command.clone().get_matches_from(&args);
    let (leaf, leaf_matches) = leaf(&command, &matches);
    let Some(path) = leaf_matches
        .try_get_one::<PathBuf>("config")
        .ok()
        .flatten()
        .cloned()
    else {
        return from_matches(&matches);
    };
    let table = read_table(&path)?;
    let mut extra = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let Some(arg) = leaf.get_arguments().find(|a| a.get_long() == Some(&long)) else {
            if !knows_flag(&command, &long) {
                return Err(in_file(&path, format!("'{key}' is not an option")));
            }
            continue;
        };
        let given = matches!(
            leaf_matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if !given {
            extra.extend(flag_args(&long, arg.get_action(), value).map_err(|e| in_file(&path, e))?);
        }
    }
    let mut all = args;
    all.extend(extra.into_iter().map(OsString::from));
    let matches = command
        .try_get_matches_from(all)
        .map_err(|e| in_file(&path, e.to_string().trim().to_owned()))?;
    from_matches(&matches)
}

fn from_matches(matches: &ArgMatches) -> Result<Cli, ConfigError> {
    Cli::from_arg_matches(matches).map_err(|e| ConfigError(e.to_string()))
}

fn in_file(path: &Path, message: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("config file {}: {message}", path.display()))
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| in_file(path, e.to_string()))?;
    text.parse::<toml::Table>()
        .map_err(|e| in_file(path, e.to_string().trim().to_owned()))
}

/// The subcommand that will run, and its matches.
fn leaf<'a>(
    command: &'a clap::Command,
    matches: &'a ArgMatches,
) -> (&'a clap::Command, &'a ArgMatches) {
    match matches
        .subcommand()
        .and_then(|(name, sub)| Some((command.find_subcommand(name)?, sub)))
    {
        Some((sub_command, sub_matches)) => leaf(sub_command, sub_matches),
        None => (command, matches),
    }
}

fn knows_flag(command: &clap::Command, long: &str) -> bool {
    command.get_arguments().any(|a| a.get_long() == Some(long))
        || command.get_subcommands().any(|s| knows_flag(s, long))
}

/// The flags that say what `value` says: `--long=value`, or `--long` for a switch set to true.
fn flag_args(long: &str, action: &ArgAction, value: &toml::Value) -> Result<Vec<String>, String> {
    if let (ArgAction::SetTrue, toml::Value::Boolean(on)) = (action, value) {
        return Ok(if *on {
            vec![format!("--{long}")]
        } else {
            vec![]
        });
    }
    let text = match value {
        toml::Value::Array(items) => items
            .iter()
            .map(|item| scalar(long, item))
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        other => scalar(long, other)?,
    };
    Ok(vec![format!("--{long}={text}")])
}

fn scalar(long: &str, value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(format!(
            "'{long}' must be a string, number, boolean or list"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Command;

    fn parse_with(file: &str, args: &[&str]) -> Result<Cli, ConfigError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("droppr.toml");
        std::fs::write(&path, file).expect("write config");
        let mut all: Vec<OsString> = vec!["droppr-server".into()];
        all.extend(args.iter().map(OsString::from));
        all.push("--config".into());
        all.push(path.into_os_string());
        parse_from(all)
    }

    #[test]
    fn file_fills_what_flags_leave_and_flags_win() {
        let cli = parse_with(
            "chunk-size = 1048576\nmax_chunk_size = 2097152\ncors-origins = [\"https://a.example\", \"https://b.example\"]\ntest-hooks = true\n",
            &["serve", "--chunk-size", "65536"],
        )
        .expect("valid");
        let Command::Serve(serve) = cli.into_command() else {
            panic!("serve")
        };
        assert_eq!(serve.chunk_size, 65536);
        assert_eq!(serve.max_chunk_size, 2 * 1024 * 1024);
        assert_eq!(serve.cors_origins, "https://a.example,https://b.example");
        assert!(serve.test_hooks);
    }

    #[test]
    fn keys_of_other_subcommands_are_skipped_unknown_keys_refused() {
        let cli = parse_with(
            "bind = \"127.0.0.1:9\"\nwebhook-url = \"http://127.0.0.1:1/\"\n",
            &["cleanup"],
        )
        .expect("serve-only keys are skipped by cleanup");
        assert!(matches!(cli.into_command(), Command::Cleanup(_)));
        let err = parse_with("chunk-sise = 5\n", &["serve"]).expect_err("typo");
        assert!(
            err.to_string().contains("'chunk-sise' is not an option"),
            "{err}"
        );
        let err = parse_with("chunk-size = \"lots\"\n", &["serve"]).expect_err("bad value");
        assert!(err.to_string().contains("--chunk-size"), "{err}");
        let err = parse_with("chunk-size = [", &["serve"]).expect_err("bad TOML");
        assert!(
            err.to_string().contains("droppr.toml: TOML parse error"),
            "{err}"
        );
    }
}
