//! The `callgate` binary: loads the config, starts the gateway, serves until interrupted.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

/// A SIP back-to-back user agent whose call logic runs in WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file, merged over the built-in defaults.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// UDP listen address (overrides `listen.udp`).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Where calls go when no plugin chooses (overrides `routing.default-route`).
    #[arg(long)]
    default_route: Option<String>,
    /// A plugin component to run (repeatable; replaces the config's plugins, each with defaults).
    #[arg(long = "plugin")]
    plugins: Vec<PathBuf>,
    /// Print the effective config's plugins and exit after loading them.
    #[arg(long)]
    check: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let mut config = match &cli.config {
        Some(p) => callgate::config::Config::load(p)?,
        None => callgate::config::Config::defaults(),
    };
    if let Some(l) = cli.listen {
        config.listen.udp = l;
    }
    if let Some(r) = cli.default_route {
        callgate::plugin::validate::check_sip_uri(&r)
            .map_err(|e| anyhow::anyhow!("--default-route: {e}"))?;
        config.routing.default_route = Some(r);
    }
    if !cli.plugins.is_empty() {
        config.plugins = cli
            .plugins
            .iter()
            .map(|p| {
                let name = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "plugin".into());
                callgate::plugin::PluginSpec::new(name, p.clone())
            })
            .collect();
    }
    let running = callgate::start(&config)
        .await
        .context("starting the gateway")?;
    if cli.check {
        for p in running.gateway.chain().plugins() {
            println!(
                "{}: {} bytes, hooks {:?}",
                p.name(),
                p.size(),
                p.hooks().hooks().map(|h| h.name()).collect::<Vec<_>>()
            );
        }
        return Ok(());
    }
    tracing::info!(
        udp = %running.gateway.udp_addr(),
        metrics = ?running.metrics_addr,
        plugins = running.gateway.chain().plugins().len(),
        "callgate running; Ctrl-C to stop"
    );
    tokio::signal::ctrl_c().await?;
    tracing::info!(active = running.metrics.calls_active(), "stopping");
    Ok(())
}
