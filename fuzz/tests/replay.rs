//! Replays the committed corpus of every fuzz target on stable, as an ordinary test.

use std::path::Path;

#[test]
fn corpus_replays_without_panics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, target) in wire_fuzz::TARGETS {
        let dir = root.join(name);
        let entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus for {name} at {}: {e}", dir.display()))
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(!entries.is_empty(), "corpus for {name} is empty");
        for entry in entries {
            let data = std::fs::read(entry.path()).unwrap();
            target(&data);
        }
    }
}
