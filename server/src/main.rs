//! `droppr-server`: `serve` (default), `request create|list`, `cleanup`. See `--help`.

use std::io::Write;

use droppr_protocol::wire::CreateRequest;
use droppr_server::config::{Command, RequestCommand};
use droppr_server::{cleanup, config_file, logging, open_uploads, requests, start};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Through the log once it is set up (one JSON object per line stays so).
            if tracing::dispatcher::has_been_set() {
                tracing::error!("droppr-server: {e}");
            } else {
                eprintln!("droppr-server: {e}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Box<dyn std::error::Error>> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Parse and validate everything, start logging, then run the subcommand.
fn run() -> Result<(), Box<dyn std::error::Error>> {
    let command = config_file::parse()?.into_command();
    logging::init(command.common())?;
    let config = command.server_config()?;
    match command {
        Command::Serve(_) => actix_web::rt::System::new().block_on(async {
            let (server, addr) = start(config).await?;
            tracing::info!("listening on http://{addr}");
            server.await?;
            tracing::info!("stopped");
            Ok(())
        }),
        Command::Request(RequestCommand::Create(args)) => {
            let uploads = open_uploads(config)?;
            let input = CreateRequest {
                folder: args.folder,
                expires_hours: args.expires_hours,
                password: args.password,
                max_file_size: Some(args.max_size),
                allowed_extensions: args
                    .extensions
                    .map(|list| list.split(',').map(str::to_owned).collect()),
                require_captcha: args.captcha,
            };
            let (_, created) = requests::create(uploads.meta.as_ref(), &uploads.config, &input)?;
            print_json(&created)
        }
        Command::Request(RequestCommand::List(_)) => {
            let uploads = open_uploads(config)?;
            for r in uploads.meta.requests()? {
                print_json(&requests::created(&uploads.config, &r))?;
            }
            Ok(())
        }
        Command::Cleanup(_) => {
            let uploads = open_uploads(config)?;
            print_json(&cleanup::sweep(&uploads)?)
        }
    }
}
