//! `droppr-faultfs mount BACKING MOUNTPOINT`: serves BACKING at MOUNTPOINT in the foreground.
//! SIGUSR1 makes everything durable; SIGINT, SIGTERM or `umount MOUNTPOINT` cut the power
//! (nothing unsynced reaches BACKING). Mount again to see what survived.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use droppr_faultfs::NewDirs;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

/// A FUSE layer for power-cut tests: writes stay in memory until fsynced.
#[derive(Debug, Parser)]
#[command(name = "droppr-faultfs", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve BACKING at MOUNTPOINT until SIGINT/SIGTERM or `umount MOUNTPOINT` (the power cut).
    Mount {
        backing: PathBuf,
        mountpoint: PathBuf,
        /// Strict POSIX: a new directory's name is durable only once its parent is synced.
        #[arg(long)]
        strict_dirs: bool,
    },
}

fn main() -> ExitCode {
    let Command::Mount {
        backing,
        mountpoint,
        strict_dirs,
    } = Cli::parse().command;
    let new_dirs = if strict_dirs {
        NewDirs::WithParentSync
    } else {
        NewDirs::WithOwnSync
    };
    match serve(&backing, &mountpoint, new_dirs) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("droppr-faultfs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(
    backing: &std::path::Path,
    mountpoint: &std::path::Path,
    new_dirs: NewDirs,
) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGUSR1])?;
    let mounted = droppr_faultfs::mount(backing, mountpoint, new_dirs)?;
    eprintln!(
        "droppr-faultfs: {} served at {}; SIGUSR1 syncs everything, SIGTERM or umount cuts the power",
        backing.display(),
        mountpoint.display()
    );
    while mounted.is_mounted() {
        for signal in signals.pending() {
            match signal {
                SIGUSR1 => {
                    mounted.sync_all()?;
                    eprintln!("droppr-faultfs: everything synced");
                }
                _ => return mounted.power_cut(),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Unmounted from outside: the session has ended by itself, and with it everything unsynced.
    drop(mounted);
    Ok(())
}
