//! Query strings: the parameters the docker CLI sends (`all=1`, `filters={…}`,
//! `name=busybox01`), and Docker's `filters` JSON in both of its forms.

use std::collections::BTreeMap;

use serde_json::Value;

pub use crate::docker::client::encode;

/// A request's query parameters, decoded, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(key), decode(value))
            })
            .collect();
        Query { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Docker's booleans: `1`, `true`, `True` (anything but empty, `0` and `false`).
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| !matches!(v, "" | "0" | "false" | "False"))
    }

    /// The query as it was, re-encoded (to pass on to a node).
    pub fn encoded(&self) -> String {
        self.pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
    }

    /// `filters`: `{"name":{"busybox":true}}` (what the CLI sends) or `{"name":["busybox"]}`
    /// (older clients), as key → values. A malformed one is an error message.
    pub fn filters(&self) -> Result<BTreeMap<String, Vec<String>>, String> {
        let Some(raw) = self.get("filters").filter(|f| !f.is_empty()) else { return Ok(BTreeMap::new()) };
        let value: Value = serde_json::from_str(raw).map_err(|e| format!("invalid filters {raw:?}: {e}"))?;
        let Value::Object(map) = value else { return Err(format!("invalid filters {raw:?}: not a JSON object")) };
        let mut filters = BTreeMap::new();
        for (key, values) in map {
            let list = match values {
                Value::Object(set) => {
                    set.into_iter().filter(|(_, on)| on != &Value::Bool(false)).map(|(v, _)| v).collect()
                }
                Value::Array(list) => list.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
                _ => return Err(format!("invalid filters {raw:?}: {key} holds neither a list nor a set")),
            };
            filters.insert(key, list);
        }
        Ok(filters)
    }
}

/// Percent-decodes (and turns `+` into a space, as HTML forms and Go's url.Values do).
pub fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_and_encode() {
        let q = Query::parse(Some("all=1&filters=%7B%22name%22%3A%7B%22busy%22%3Atrue%7D%7D&name=a+b&size=0"));
        assert!(q.flag("all"));
        assert!(!q.flag("size"));
        assert!(!q.flag("limit"));
        assert_eq!(q.get("name"), Some("a b"));
        assert_eq!(q.filters().unwrap()["name"], ["busy"]);
        assert_eq!(Query::parse(Some(&q.encoded())), q);
        let old = Query::parse(Some("filters=%7B%22status%22%3A%5B%22running%22%5D%7D"));
        assert_eq!(old.filters().unwrap()["status"], ["running"]);
        assert!(Query::parse(Some("filters=%7Bnope")).filters().is_err());
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%41"), "%zzA");
    }
}
