//! What the benchmark reads of the simulated hosts' links.

use std::fmt::Display;

use anyhow::Context;
use overlay::container::{format_mac, parse_mac};
use overlay_tests::cmd;

/// The MAC address of `dev` in `ns` (`ip -j link show dev DEV`).
pub fn mac_of(ns: &str, dev: &str) -> anyhow::Result<[u8; 6]> {
    let out = cmd::ip(ns, &["-j", "link", "show", "dev", dev])?;
    let links: serde_json::Value = serde_json::from_str(&out)?;
    let address = links[0]["address"].as_str().with_context(|| format!("no MAC for {dev} in {ns}"))?;
    parse_mac(address).map_err(|e| anyhow::anyhow!("{dev} in {ns}: {e}"))
}

/// A permanent neighbour entry in `ns` (`ip neigh replace IP lladdr MAC dev DEV nud
/// permanent`): the reference paths' containers and devices never ARP.
pub fn pin_neighbour(ns: &str, dev: &str, ip: impl Display, mac: [u8; 6]) -> anyhow::Result<()> {
    let (ip, lladdr) = (ip.to_string(), format_mac(mac));
    cmd::ip(ns, &["neigh", "replace", &ip, "lladdr", &lladdr, "dev", dev, "nud", "permanent"])?;
    Ok(())
}
