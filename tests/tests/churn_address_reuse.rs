//! Scenario 4 of issue 16: 300 rounds of removing a container and making it again with
//! the same name and address on another host (and one agent killed and restarted on
//! the way). After each round every pair answers within 2 s and every host's remote
//! endpoint table is exactly the store's: no entry left at the host a container left.

use overlay_tests::faults::churn::{self, Size};

#[test]
fn churn_with_address_reuse_leaves_no_stale_entry() -> anyhow::Result<()> {
    let figures = churn::run(Size { rounds: 300 })?;
    eprintln!("{}", serde_json::to_string_pretty(&figures)?);
    assert!(figures.problems.is_empty(), "{:#?}", figures.problems);
    assert_eq!((figures.rounds_off, figures.stale_entries, figures.duplicates), (0, 0, 0));
    Ok(())
}
