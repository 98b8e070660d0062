//! The shell's clocks: wall-clock time handed to the core where a wall clock matters (record
//! timestamps, retention, member ids). Monotonic time is each component's own
//! (`Broker::mono_ms`, the partition's clock origin).

use std::time::UNIX_EPOCH;

use skein_sys as sys;

/// Wall-clock milliseconds since the Unix epoch: the time the shell hands the core.
pub fn now_ms() -> u64 {
    sys::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
