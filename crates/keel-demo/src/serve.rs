//! `keel-demo serve`: the HTTP API (work in progress).

use anyhow::Result;
use keel_pool::Config;

/// Options of `keel-demo serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn run(_config: Config, _args: ServeArgs) -> Result<()> {
    anyhow::bail!("serve is not built yet")
}
