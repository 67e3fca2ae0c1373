//! `--label KEY=VALUE` arguments, as nodes and networks take them: one set of rules, so
//! a label valid on one is valid on the other.

use std::collections::BTreeMap;

/// A label that breaks the rules, and which rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLabel {
    pub label: String,
    pub reason: &'static str,
}

/// Parses labels. Keys are letters, digits and `._-/`, start with a letter or digit, are
/// unique and not among `reserved`; values have no control characters.
pub fn parse(labels: &[String], reserved: &[&str]) -> Result<BTreeMap<String, String>, InvalidLabel> {
    let mut parsed = BTreeMap::new();
    for label in labels {
        let invalid = |reason| InvalidLabel { label: label.clone(), reason };
        let (key, value) = label.split_once('=').ok_or_else(|| invalid("it has no '='"))?;
        if key.is_empty() || key.len() > 63 {
            return Err(invalid("the key must be 1 to 63 characters"));
        }
        if !key.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        {
            return Err(invalid(
                "the key may only hold letters, digits and . _ - / and must start with a letter or digit",
            ));
        }
        if reserved.contains(&key) {
            return Err(invalid("this key is set by the agent itself"));
        }
        if value.len() > 255 || value.chars().any(char::is_control) {
            return Err(invalid("the value must be at most 255 characters, without control characters"));
        }
        if parsed.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(invalid("the key is given twice"));
        }
    }
    Ok(parsed)
}
