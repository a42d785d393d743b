//! The cluster's own formats: the Raft log file, internal-listener frames, and the metadata
//! state machine fed a snapshot and commands.

use serde_json::Value;
use strom_cluster::network::wire::{FrameError, MAX_FRAME_BYTES, Request, read_frame};
use strom_cluster::{ClusterState, Command};

/// See the crate docs.
pub fn raft_log(data: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raft-log");
    std::fs::write(&path, data).expect("write");
    // Refusing (damage followed by valid records) is an answer; panicking is not.
    let _ = strom_cluster::storage::log_file::replay(&path);
}

/// See the crate docs.
pub fn wire_frame(data: &[u8]) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut reader: &[u8] = data;
    let result = rt.block_on(read_frame::<_, Request>(&mut reader));
    if let Some(len) = data.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])) {
        if len > MAX_FRAME_BYTES {
            assert!(matches!(result, Err(FrameError::TooLarge(_))), "a frame over the limit is refused: {result:?}");
        }
    }
}

/// See the crate docs. The input is JSON: `{"state": <snapshot>, "commands": [<command>...]}`
/// (or just a list of commands, applied to an empty state).
pub fn state_machine(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let (state, commands) = match value {
        Value::Array(commands) => (Some(ClusterState::default()), commands),
        Value::Object(mut o) => {
            let state = o.remove("state").map_or(Some(ClusterState::default()), |s| serde_json::from_value(s).ok());
            let commands = match o.remove("commands") {
                Some(Value::Array(c)) => c,
                _ => Vec::new(),
            };
            (state, commands)
        }
        _ => return,
    };
    let Some(mut state) = state else { return };
    if state.validate().is_err() {
        return; // a snapshot the state machine never writes
    }
    for (i, c) in commands.into_iter().enumerate() {
        let Ok(command) = serde_json::from_value::<Command>(c) else { continue };
        let before = state.clone();
        match state.apply(1000 + i as u64, &command) {
            Ok(_) => {}
            Err(_) => assert_eq!(state, before, "a rejected command changes nothing: {command:?}"),
        }
        state.validate().unwrap_or_else(|e| panic!("after {command:?}: {e}"));
    }
}
