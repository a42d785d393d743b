//! Every committed fuzz input — the seed corpora (`fuzz/corpus/<target>/`, recorded from real
//! client traffic by scripts/fuzz-seeds.sh) and the regressions (`fuzz/regressions/<target>/`,
//! each an input that once crashed a target) — replayed through the targets on stable.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Panics anywhere in the process, also in tasks the broker spawned (whose panics tokio would
/// otherwise swallow; libFuzzer aborts on them).
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz").join(kind).join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_none_or(|e| e != "md"));
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, run) = strom_fuzz::TARGETS.iter().find(|(name, _)| *name == target).expect("a target");
    count_panics();
    let seeds = inputs("corpus", target);
    assert!(!seeds.is_empty(), "fuzz/corpus/{target} has seeds (scripts/fuzz-seeds.sh writes them)");
    for path in seeds.iter().chain(inputs("regressions", target).iter()) {
        let data = std::fs::read(path).expect("read input");
        let before = PANICS.load(Ordering::SeqCst);
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target} failed on {}", path.display());
        assert_eq!(PANICS.load(Ordering::SeqCst), before, "{target} panicked somewhere on {}", path.display());
    }
}

#[test]
fn request_frame() {
    replay("request_frame");
}

#[test]
fn record_batch() {
    replay("record_batch");
}

#[test]
fn recovery() {
    replay("recovery");
}

#[test]
fn raft_log() {
    replay("raft_log");
}

#[test]
fn wire_frame() {
    replay("wire_frame");
}

#[test]
fn state_machine() {
    replay("state_machine");
}

#[test]
fn every_target_is_replayed_here() {
    let here = include_str!("corpus.rs");
    for (name, _) in strom_fuzz::TARGETS {
        assert!(here.contains(&format!("fn {name}()")), "no replay test for {name}");
    }
}
