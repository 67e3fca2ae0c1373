//! Keys are paths: `v1/nodes/ID`, `v1/networks/ids/ID`. Each module keeps its own
//! layout (`cluster::keys`, `network::keys`, docs/store.md); this is what they share.

/// The name of `key` if it sits directly under the directory `dir`: `ID` for
/// `v1/nodes/ID` under `v1/nodes/`. `None` for a key elsewhere, deeper, or `dir` itself.
pub fn name_under<'a>(key: &'a str, dir: &str) -> Option<&'a str> {
    key.strip_prefix(dir).filter(|name| !name.is_empty() && !name.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keys_one_level_below() {
        assert_eq!(name_under("v1/nodes/n1", "v1/nodes/"), Some("n1"));
        assert_eq!(name_under("v1/nodes/", "v1/nodes/"), None);
        assert_eq!(name_under("v1/nodes/n1/x", "v1/nodes/"), None);
        assert_eq!(name_under("v1/health/n1", "v1/nodes/"), None);
    }
}
