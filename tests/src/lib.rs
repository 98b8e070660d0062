//! skein-tests: end-to-end tests that start real `skein` broker processes and drive them with
//! real Kafka clients. The Rust tests live in `tests/tests/`; the client-library tests (kcat,
//! confluent-kafka, kafka-python) live in `tests/e2e/` and run under pytest from `ci/test.sh`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Path of the `skein` binary, built once per test process in this workspace's target dir.
pub fn skein_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("SKEIN_BIN") {
            return PathBuf::from(p);
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--bin", "skein"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build of skein failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"));
        target.join("release").join("skein")
    })
    .clone()
}
