//! The bodies of Strom's fuzz targets: each takes arbitrary bytes and checks a property that
//! must hold for every input. `fuzz/` wraps each in a `cargo fuzz` (libFuzzer) target;
//! `tests/corpus.rs` replays every committed corpus and regression input through the same
//! functions on stable, so a crash found once stays fixed.
//!
//! | target | input | property |
//! |---|---|---|
//! | [`request::request_frame`] | one request frame (header and body) | an in-process broker answers or closes that connection, never panics, and still answers an ApiVersions afterwards |
//! | [`batch::record_batch`] | a produce's record set | validation never panics; the topic rules (recompression, LogAppendTime) keep a valid batch valid with the same records; what a real log accepts reads back byte for byte |
//! | [`recovery::recovery`] | the files of a partition directory | opening never panics and never serves a batch that fails its CRC |
//! | [`internal::raft_log`] | a Raft log file | replay never panics |
//! | [`internal::wire_frame`] | an internal-listener frame | decoding never panics and refuses what is over the frame limit |
//! | [`internal::state_machine`] | a snapshot followed by commands (JSON) | applying them never panics and every state it reaches passes `ClusterState::validate` |

pub mod batch;
pub mod internal;
pub mod recovery;
pub mod request;

/// A target's body: it panics when its property fails.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/` call them.
pub const TARGETS: &[(&str, Target)] = &[
    ("request_frame", request::request_frame),
    ("record_batch", batch::record_batch),
    ("recovery", recovery::recovery),
    ("raft_log", internal::raft_log),
    ("wire_frame", internal::wire_frame),
    ("state_machine", internal::state_machine),
];
