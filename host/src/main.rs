//! The `callgate` binary: with no subcommand, loads the config, starts the gateway and serves until
//! interrupted; `callgate plugin ...` works on plugin artifacts without starting anything.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

/// Per-call messages and call state are many small, short-lived allocations spread over the worker
/// threads; mimalloc's thread-local free lists keep them off a shared heap that glibc trimmed and
/// regrew (with page faults) under load.
#[global_allocator]
static ALLOCATOR: callgate::allocator::MiMalloc = callgate::allocator::MiMalloc;

/// A SIP back-to-back user agent whose call logic runs in WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Serving flags: they apply when no subcommand is given.
    #[command(flatten)]
    serve: ServeArgs,
}

/// What to run instead of the gateway.
#[derive(Debug, Subcommand)]
enum Command {
    /// Work with plugin components.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

/// The `plugin` subcommands. Each takes its own argument struct and has one function below.
#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Describe a plugin component: contract version, name, version, hooks, size, digest, imports.
    Inspect(InspectArgs),
    /// Push a plugin component to an OCI registry as a Wasm OCI artifact; prints its digests.
    Push(PushArgs),
    /// Create a new plugin (Rust, C or Python) that builds and passes its own test.
    New(NewArgs),
    /// Build a plugin directory into a component, then run its `callgate-test.json` cases.
    Build(BuildArgs),
}

/// `callgate plugin new`.
#[derive(Debug, Args)]
struct NewArgs {
    /// The plugin's directory, created; its last component is the plugin's name.
    dir: PathBuf,
    /// `rust`, `c` or `python`.
    #[arg(long, default_value = "rust", value_parser = callgate::scaffold::parse_lang)]
    lang: callgate_plugin_build::Lang,
}

/// `callgate plugin build`.
#[derive(Debug, Args)]
struct BuildArgs {
    /// The plugin's directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Where the component goes (default: `<dir>/target/callgate`).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Flags of the gateway itself.
#[derive(Debug, Args)]
struct ServeArgs {
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

/// `callgate plugin inspect`.
#[derive(Debug, Args)]
struct InspectArgs {
    /// The component file (`.wasm`).
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `callgate plugin push`.
#[derive(Debug, Args)]
struct PushArgs {
    /// The component file (`.wasm`).
    file: PathBuf,
    /// Where to push it: `host[:port]/repository:tag`.
    reference: String,
    /// Use plain HTTP (only allowed for a registry on loopback, e.g. a local test registry).
    #[arg(long)]
    insecure: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    match cli.command {
        None => {
            tracing_subscriber::fmt().with_env_filter(filter).init();
            // The config says how many worker threads to start, so it is read before the runtime.
            let config = match &cli.serve.config {
                Some(p) => callgate::config::Config::load(p)?,
                None => callgate::config::Config::defaults(),
            };
            runtime(config.threads.workers)?.block_on(serve(cli.serve, config))
        }
        Some(command) => {
            // Subcommands print their results on stdout (possibly JSON): keep logs off it.
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .init();
            runtime(0)?.block_on(async {
                match command {
                    Command::Plugin(PluginCommand::Inspect(args)) => inspect(&args),
                    Command::Plugin(PluginCommand::Push(args)) => push(&args).await,
                    Command::Plugin(PluginCommand::New(args)) => new_plugin(&args),
                    Command::Plugin(PluginCommand::Build(args)) => build(&args).await,
                }
            })
        }
    }
}

/// The tokio runtime with `workers` worker threads (0: tokio's default, one per CPU core).
fn runtime(workers: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        b.worker_threads(workers);
    }
    b.enable_all().build().context("starting the runtime")
}

async fn serve(cli: ServeArgs, mut config: callgate::config::Config) -> anyhow::Result<()> {
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
    let _sighup = callgate::reload::on_sighup(running.plugins.clone())
        .context("installing the SIGHUP handler")?;
    tracing::info!(
        udp = %running.gateway.udp_addr(),
        metrics = ?running.metrics_addr,
        admin = ?running.admin_addr,
        plugins = running.gateway.chain().plugins().len(),
        "callgate running; SIGHUP reloads the plugins, Ctrl-C stops"
    );
    tokio::signal::ctrl_c().await?;
    tracing::info!(active = running.metrics.calls_active(), "stopping");
    Ok(())
}

/// `callgate plugin new DIR [--lang rust|c|python]`.
fn new_plugin(args: &NewArgs) -> anyhow::Result<()> {
    for f in callgate::scaffold::new_plugin(&args.dir, args.lang)? {
        println!("created {}", f.display());
    }
    println!(
        "build and test it: callgate plugin build {}",
        args.dir.display()
    );
    Ok(())
}

/// `callgate plugin build [DIR] [--out DIR]`.
async fn build(args: &BuildArgs) -> anyhow::Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join("target").join("callgate"));
    let (dir, wit) = (args.dir.clone(), callgate::scaffold::wit_dir(&args.dir));
    let component =
        tokio::task::spawn_blocking(move || callgate_plugin_build::build_plugin(&dir, &wit, &out))
            .await??;
    println!("built {}", component.display());
    if args.dir.join(callgate::scaffold::TEST_FILE).is_file() {
        let n = callgate::scaffold::run_tests(&args.dir, &component).await?;
        println!("{n} test case(s) passed");
    }
    Ok(())
}

/// `callgate plugin inspect FILE [--json]`.
fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let artifact = callgate::plugin::Artifact::read(&bytes)
        .with_context(|| format!("{}", args.file.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&artifact)?);
    } else {
        print!("{}", describe(&args.file, &artifact));
    }
    Ok(())
}

/// `callgate plugin push FILE REF [--insecure]`: prints the manifest digest (`REPO@digest` pins the
/// push for good) and the component's SHA-256 (the value of a plugin's `sha256` pin).
async fn push(args: &PushArgs) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let pushed = callgate::plugin::source::push(bytes, &args.reference, args.insecure)
        .await
        .with_context(|| format!("{}", args.file.display()))?;
    println!("{:<10} {}", "pushed", pushed.reference);
    println!("{:<10} {}", "digest", pushed.manifest_digest);
    println!("{:<10} {}", "sha256", pushed.sha256);
    Ok(())
}

/// The text form of `inspect`: one labelled line per fact, imports one per line.
fn describe(file: &Path, a: &callgate::plugin::Artifact) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(s, "{label:<10} {value}");
    };
    line("file", &file.display().to_string());
    line(
        "contract",
        &a.contract.as_deref().map_or_else(
            || {
                "none (no callgate:plugin/hooks or lean-hooks export: not a Callgate plugin)"
                    .to_string()
            },
            |v| format!("callgate:plugin@{v}"),
        ),
    );
    match &a.meta {
        Some(m) => {
            line("plugin", &format!("{} {}", m.name, m.version));
            line("sdk", &format!("callgate-sdk {}", m.sdk));
            let hooks = if m.hooks.is_empty() {
                "none (init only)".to_string()
            } else {
                m.hooks.join(", ")
            };
            line("hooks", &hooks);
        }
        None => {
            line(
                "plugin",
                "no metadata (not built with callgate-sdk): the plugin reports its hooks from `init` at load",
            );
        }
    }
    line("size", &human_size(a.size));
    line("sha256", &a.digest);
    if a.imports.is_empty() {
        line("imports", "none");
    }
    for (i, import) in a.imports.iter().enumerate() {
        line(if i == 0 { "imports" } else { "" }, import);
    }
    s
}

/// `138949 bytes (135.7 KiB)`, or MiB from 1 MiB up.
fn human_size(bytes: usize) -> String {
    let b = bytes as f64;
    if b < 1024.0 * 1024.0 {
        format!("{bytes} bytes ({:.1} KiB)", b / 1024.0)
    } else {
        format!("{bytes} bytes ({:.1} MiB)", b / (1024.0 * 1024.0))
    }
}
