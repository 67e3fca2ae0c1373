//! Arguments shared by the subcommands that talk to the store.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Args;
use overlay::{
    cluster::Timing,
    shutdown::Shutdown,
    store::{AnyStore, StoreConfig, StoreError, TlsFiles},
};

/// Where the cluster store is and how to reach it.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The cluster store: etcd://HOST:PORT[,HOST:PORT…]/PREFIX or zk://HOST:PORT[,HOST:PORT…]/PREFIX
    /// (ZooKeeper 3.6+); the prefix names the cluster.
    #[arg(long, env = "OVERLAY_STORE")]
    pub store: Option<String>,
    /// CA certificate (PEM) to verify the store's certificate; turns on TLS (etcd only).
    #[arg(long, env = "OVERLAY_STORE_CA")]
    pub store_ca: Option<PathBuf>,
    /// Client certificate (PEM) for stores that authenticate clients; needs --store-key.
    #[arg(long, env = "OVERLAY_STORE_CERT")]
    pub store_cert: Option<PathBuf>,
    /// Client private key (PEM) for --store-cert.
    #[arg(long, env = "OVERLAY_STORE_KEY")]
    pub store_key: Option<PathBuf>,
    /// User for etcd authentication, or ZooKeeper digest user (the cluster's nodes get an ACL for
    /// this user only); the password comes from OVERLAY_STORE_PASSWORD or --store-password-file.
    #[arg(long, env = "OVERLAY_STORE_USER")]
    pub store_user: Option<String>,
    /// File holding the store password (first line).
    #[arg(long, env = "OVERLAY_STORE_PASSWORD_FILE")]
    pub store_password_file: Option<PathBuf>,
}

impl StoreArgs {
    /// Validates everything and reads the TLS and password files; nothing is sent yet.
    pub fn config(&self) -> anyhow::Result<StoreConfig> {
        let url = self.store.as_deref().ok_or(StoreError::NoUrl)?;
        let password = match (&self.store_password_file, std::env::var("OVERLAY_STORE_PASSWORD").ok()) {
            (Some(file), _) => Some(
                std::fs::read_to_string(file)
                    .with_context(|| format!("reading the store password from {}", file.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            (None, password) => password,
        };
        let tls = TlsFiles { ca: self.store_ca.clone(), cert: self.store_cert.clone(), key: self.store_key.clone() };
        Ok(StoreConfig::new(url, &tls, self.store_user.clone(), password)?)
    }
}

#[derive(Debug, Args)]
pub struct StoreOptions {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Give up if the store stays unreachable this long (0: keep trying).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub store_timeout: Duration,
}

impl StoreOptions {
    pub fn connect(&self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<AnyStore> {
        Ok(self.connect_with_config(runtime)?.1)
    }

    /// [`StoreOptions::connect`], also returning the validated configuration.
    pub fn connect_with_config(&self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<(StoreConfig, AnyStore)> {
        let config = self.store.config()?;
        let timeout = store_timeout_arg(Some(self.store_timeout), None);
        let store = runtime.block_on(overlay::store::connect(&config, timeout, &Shutdown::never()))?;
        Ok((config, store))
    }
}

/// Lease timing of a daemon (agent or manager).
#[derive(Debug, Args)]
pub struct TimingArgs {
    /// How often the lease is refreshed (e.g. 3s, 500ms).
    #[arg(long, env = "OVERLAY_HEARTBEAT", value_parser = parse_duration, default_value = "3s")]
    pub heartbeat: Duration,
    /// How long the registration outlives the last heartbeat (whole seconds, e.g. 12s).
    #[arg(long, env = "OVERLAY_TTL", value_parser = parse_duration, default_value = "12s")]
    pub ttl: Duration,
}

impl TimingArgs {
    pub fn timing(&self) -> anyhow::Result<Timing> {
        Ok(Timing::new(self.heartbeat, self.ttl)?)
    }
}

/// Parses `500ms`, `3s`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 500ms, 3s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {text:?}: use ms, s, m or h")),
    };
    if !seconds.is_finite() || seconds > 365.0 * 86400.0 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// `--store-timeout` for one-shot commands: give up on an unreachable store after this.
pub fn store_timeout_arg(value: Option<Duration>, default: Option<Duration>) -> Option<Duration> {
    match value {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None => default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "s", "3x", "-1s", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn zero_store_timeout_means_forever() {
        let ten = Some(Duration::from_secs(10));
        assert_eq!(store_timeout_arg(Some(Duration::ZERO), ten), None);
        assert_eq!(store_timeout_arg(None, ten), ten);
        assert_eq!(store_timeout_arg(Some(Duration::from_secs(2)), None), Some(Duration::from_secs(2)));
    }
}
