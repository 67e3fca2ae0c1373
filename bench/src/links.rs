//! What the benchmark reads of the simulated hosts' links.

use anyhow::Context;
use overlay::container::parse_mac;
use overlay_tests::cmd;

/// The MAC address of `dev` in `ns` (`ip -j link show dev DEV`).
pub fn mac_of(ns: &str, dev: &str) -> anyhow::Result<[u8; 6]> {
    let out = cmd::ip(ns, &["-j", "link", "show", "dev", dev])?;
    let links: serde_json::Value = serde_json::from_str(&out)?;
    let address = links[0]["address"].as_str().with_context(|| format!("no MAC for {dev} in {ns}"))?;
    parse_mac(address).map_err(|e| anyhow::anyhow!("{dev} in {ns}: {e}"))
}
