//! The command line: `rosewire serve`, `rosewire init`.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::App;
use crate::config::{Config, DEFAULT_CONFIG_TOML};
use crate::fed::identity::InstanceKey;
use crate::store::Store;

/// The log filter used when `ROSEWIRE_LOG` is not set.
const DEFAULT_LOG_FILTER: &str = "info,russh=warn,hyper=warn";

#[derive(Parser, Debug)]
#[command(
    name = "rosewire",
    version,
    about = "A federated chat and file-sharing network reached with plain SSH"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand, Debug)]
enum Commands {
    /// Run the instance (creates the data directory, keys and database on first run).
    Serve(ServeArgs),
    /// Write a commented config file and the instance's keys, then exit.
    Init(InitArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Config file (default: $CONFIGURATION_DIRECTORY/rosewire.toml, else DATA_DIR/rosewire.toml, if present).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory: host key, database, users' files.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The instance's public name (users are @nick@NAME).
    #[arg(long, value_name = "NAME")]
    domain: Option<String>,
    /// SSH listen address, such as 0.0.0.0:2222.
    #[arg(long, value_name = "ADDR")]
    ssh_listen: Option<SocketAddr>,
    /// HTTP (federation) listen address, such as 0.0.0.0:8080.
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
    /// A peer to contact first (repeatable), such as https://rose.example.
    #[arg(long, value_name = "URL")]
    bootstrap: Vec<String>,
    /// Development mode: plain http peers, loopback addresses, short timers.
    #[arg(long)]
    dev: bool,
}

#[derive(Args, Debug)]
struct InitArgs {
    /// Data directory to initialise.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The instance's public name, written into the config.
    #[arg(long, value_name = "NAME")]
    domain: Option<String>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Commands::Serve(args) => resolve_config(args).and_then(serve_blocking),
        Commands::Init(args) => init(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rosewire: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ROSEWIRE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Defaults, then the config file, then flags; validated last.
fn resolve_config(args: ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => {
            let data_dir = args
                .data_dir
                .clone()
                .unwrap_or_else(crate::config::default_data_dir);
            if let Some(implicit) = implicit_config_path(&data_dir) {
                Config::load(&implicit)?
            } else {
                Config {
                    data_dir,
                    ..Config::default()
                }
            }
        }
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(domain) = args.domain {
        config.domain = domain;
    }
    if let Some(addr) = args.ssh_listen {
        config.ssh.listen = addr;
    }
    if let Some(addr) = args.http_listen {
        config.http.listen = addr;
    }
    if !args.bootstrap.is_empty() {
        config.federation.bootstrap = args.bootstrap;
    }
    config.dev |= args.dev;
    config.normalize();
    config.validate()?;
    Ok(config)
}

/// The config file read when `--config` is not given: `$CONFIGURATION_DIRECTORY/rosewire.toml`
/// (systemd's ConfigurationDirectory), else `DATA_DIR/rosewire.toml`, if either exists.
fn implicit_config_path(data_dir: &Path) -> Option<PathBuf> {
    let from_systemd = std::env::var_os("CONFIGURATION_DIRECTORY")
        .filter(|v| !v.is_empty())
        .map(|dir| PathBuf::from(dir).join("rosewire.toml"));
    from_systemd
        .into_iter()
        .chain([Config::config_path_in_data_dir(data_dir)])
        .find(|p| p.exists())
}

/// Creates the data directory (mode 0700) if needed.
fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .unwrap_or_else(crate::config::default_data_dir);
    ensure_data_dir(&data_dir)?;
    let config_path = Config::config_path_in_data_dir(&data_dir);
    if config_path.exists() {
        bail!(
            "{} already exists; edit it, or remove it to start over",
            config_path.display()
        );
    }
    let mut text = DEFAULT_CONFIG_TOML.to_owned();
    if let Some(domain) = &args.domain {
        text = text.replacen(
            "# domain = \"rose.example\"",
            &format!("domain = {domain:?}"),
            1,
        );
    }
    // Refuse to write a config that `serve` would then refuse.
    let parsed = Config::from_toml(&text, &config_path)?;
    parsed.validate()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&config_path)
        .with_context(|| format!("cannot create {}", config_path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let config = Config {
        data_dir: data_dir.clone(),
        ..parsed
    };
    crate::keys::load_or_create(&config.host_key_path(), "rosewire host key")?;
    crate::keys::load_or_create(&config.instance_key_path(), "rosewire instance key")?;
    println!("wrote {}", config_path.display());
    println!(
        "wrote {} and {}",
        config.host_key_path().display(),
        config.instance_key_path().display()
    );
    println!(
        "start with: rosewire serve --data-dir {}",
        data_dir.display()
    );
    Ok(())
}

fn serve_blocking(config: Config) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(config))
}

/// File descriptors needed beside the connections: the database and its WAL, listeners,
/// files being uploaded, read or copied.
const FD_HEADROOM: u64 = 256;

/// Raises the soft limit on open files to the hard limit (as nginx's `worker_rlimit_nofile`
/// and Go's runtime do): the default soft limit of 1024 is below what the connection limits
/// allow. Warns when even the hard limit is below what they need, since accepting then fails
/// with "too many open files" before the limits refuse anyone.
fn raise_open_file_limit(config: &Config) {
    let needed = (config.ssh.max_connections
        + config.ssh.max_startups.full
        + config.http.max_connections) as u64
        + FD_HEADROOM;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    if limit.rlim_cur < needed {
        tracing::warn!(
            open_files = limit.rlim_cur,
            needed,
            "the open file limit is below what ssh.max_connections, ssh.max_startups and \
             http.max_connections allow; raise it (LimitNOFILE= in the systemd unit) or lower them"
        );
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    ensure_data_dir(&config.data_dir)?;
    raise_open_file_limit(&config);
    let (host_key, created) =
        crate::keys::load_or_create(&config.host_key_path(), "rosewire host key")?;
    if created {
        tracing::info!(path = %config.host_key_path().display(), "created the ssh host key");
    }
    let (instance_key, _) =
        crate::keys::load_or_create(&config.instance_key_path(), "rosewire instance key")?;
    let tls = crate::http::tls::Tls::from_config(&config.http)
        .context("cannot load http.tls_cert and http.tls_key")?;
    let (store, store_thread) = Store::open(&config.database_path()).with_context(|| {
        format!(
            "cannot open the database {}",
            config.database_path().display()
        )
    })?;
    // Before any session: what a crash left in .partial/ can never complete.
    let data_dir = config.data_dir.clone();
    let (files, bytes) =
        tokio::task::spawn_blocking(move || crate::library::sweep_partials(&data_dir))
            .await
            .context("cannot sweep unfinished uploads")?;
    if files > 0 {
        tracing::info!(
            files,
            bytes,
            "swept unfinished uploads left by an earlier run"
        );
    }
    let ssh_listener = TcpListener::bind(config.ssh.listen)
        .await
        .with_context(|| format!("cannot listen for ssh on {}", config.ssh.listen))?;
    let http_listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen for http on {}", config.http.listen))?;
    let signals = Signals::new()?;
    let ssh_addr = ssh_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let mut config = config;
    config.settle_domain(http_addr.port());
    let fingerprint = host_key
        .public_key()
        .fingerprint(russh::keys::HashAlg::Sha256);
    let host = config
        .domain
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    println!(
        "RoseWire {} serving {}",
        env!("CARGO_PKG_VERSION"),
        config.domain
    );
    println!("  data directory: {}", config.data_dir.display());
    println!("  host key: {fingerprint}");
    println!("  connect with: ssh -p {} YOURNICK@{host}", ssh_addr.port());
    println!("  (no key yet? make one with: ssh-keygen -t ed25519)");
    println!("listening: ssh={ssh_addr} http={http_addr}");
    tracing::info!(%ssh_addr, %http_addr, domain = %config.domain, dev = config.dev, "serving");

    // The addresses actually bound (a port of 0 picks a free one).
    config.ssh.listen = ssh_addr;
    config.http.listen = http_addr;
    // Named for the settled domain: the key id is `{base_url}/api/s2s/instance#main-key`.
    let fed_key = Arc::new(InstanceKey::new(&instance_key, &config.base_url())?);
    drop(instance_key);
    let app = App::new(config, store, fed_key)?;
    // Outboards of content no local file has any more (and any left half made by a crash)
    // go; those local files lack are made.
    let library = app.library.clone();
    tokio::spawn(async move {
        match library.sweep_outboards().await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "swept outboards of files no longer here"),
            Err(e) => tracing::warn!("cannot sweep outboards: {e}"),
        }
        match library.fill_outboards().await {
            Ok(0) => {}
            Ok(made) => tracing::info!(made, "made the outboards files lacked"),
            Err(e) => tracing::warn!("cannot make missing outboards: {e}"),
        }
    });
    let (down_tx, down_rx) = watch::channel(false);
    let ssh_task = tokio::spawn(crate::ssh::serve(
        app.clone(),
        ssh_listener,
        host_key,
        down_rx.clone(),
    ));
    app.fetch_remote_profiles();
    app.fed.start(down_rx.clone());
    let http_task = tokio::spawn(crate::http::serve(
        app.clone(),
        http_listener,
        tls.clone(),
        down_rx,
    ));

    signals.wait(tls.as_ref()).await;
    tracing::info!("shutting down: telling sessions");
    let _ = down_tx.send(true);
    let _ = ssh_task.await;
    let _ = http_task.await;
    drop(app);
    tokio::task::spawn_blocking(move || store_thread.close())
        .await
        .context("closing the database")?;
    tracing::info!("stopped");
    Ok(())
}

/// The signals the server acts on, listened for from before it says it is listening (so
/// that none arriving after that takes its default action, which would end the process).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?,
        })
    }

    /// Waits for SIGTERM or SIGINT. Meanwhile each SIGHUP rereads the TLS certificate and
    /// key, if the HTTP endpoint serves TLS.
    async fn wait(mut self, tls: Option<&crate::http::tls::Tls>) {
        loop {
            tokio::select! {
                _ = self.term.recv() => break tracing::info!("SIGTERM received"),
                _ = self.int.recv() => break tracing::info!("SIGINT received"),
                _ = self.hup.recv() => match tls {
                    Some(tls) => tls.reload_logged().await,
                    None => tracing::info!("SIGHUP received: nothing to reload (no http.tls_cert)"),
                },
            }
        }
    }
}
