//! `pipecron healthcheck`: asks the running daemon's `/healthz`, for a container's HEALTHCHECK, which has no shell
//! and no curl. It reads the same `--listen` / `PIPECRON_LISTEN` as `pipecron run`, so that one setting serves both.

use std::time::Duration;

use super::Error;
use super::run::{Listen, parse_listen};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the daemon listens, as given to `pipecron run` (0.0.0.0 is asked on 127.0.0.1).
    #[arg(long, env = "PIPECRON_LISTEN", default_value = "127.0.0.1:8466", value_name = "ADDR", value_parser = parse_listen)]
    listen: Listen,
    /// How long to wait for the answer.
    #[arg(long, default_value = "5s", value_parser = crate::duration::parse)]
    timeout: Duration,
}

pub async fn run(args: &Args) -> Result<(), Error> {
    let Some(mut addr) = args.listen.0 else {
        return Err(Error::Usage("the daemon's server is off (--listen off): use `pipecron status --quiet`".into()));
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{addr}/healthz");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(args.timeout)
        .build()
        .map_err(|e| Error::Unhealthy(format!("cannot build an HTTP client: {e}")))?;
    let answer = client.get(&url).send().await.map_err(|e| Error::Unhealthy(format!("{url}: {e}")))?;
    let status = answer.status();
    let body = answer.text().await.unwrap_or_default();
    match status.is_success() {
        true => Ok(()),
        false => Err(Error::Unhealthy(format!("{url} answered {status}: {}", body.trim()))),
    }
}
