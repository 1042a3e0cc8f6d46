//! `droppr-server`: `serve` (default), `request create|list`, `cleanup`. See `--help`.

use std::io::Write;

use clap::Parser;
use droppr_protocol::wire::CreateRequest;
use droppr_server::config::{Cli, Command, RequestCommand};
use droppr_server::{cleanup, open_uploads, requests, start};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("droppr-server: {e}");
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

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let config = cli.serve.validate()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => actix_web::rt::System::new().block_on(async {
            let (server, addr) = start(config).await?;
            tracing::info!("listening on http://{addr}");
            server.await?;
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
        Command::Request(RequestCommand::List) => {
            let uploads = open_uploads(config)?;
            for r in uploads.meta.requests()? {
                print_json(&requests::created(&uploads.config, &r))?;
            }
            Ok(())
        }
        Command::Cleanup => {
            let uploads = open_uploads(config)?;
            print_json(&cleanup::sweep(&uploads)?)
        }
    }
}
