//! What a recovery does with the files an interrupted clean left (pure), following the
//! protocol of [`super::job`]: `.cleaned` files are an unfinished destination and go; a
//! `<base>.log.swap` is a committed one, so the segments it replaces go and its `.swap` files
//! are renamed in; index `.swap` files without their `<base>.log.swap` (a crash between
//! renaming the indexes and the log) are unfinished too and go.
//!
//! The driver lists the partition directory, scans each `<base>.log.swap` (as a segment that
//! may have gaps: [`crate::log::SegmentScan::allow_gaps`]) for its end offset, and carries out
//! the actions in order before the rest of recovery ([`crate::recovery`]) lists the segments.
//!
//! Invariants: a segment is removed only if a committed swap covers its base; the actions for
//! one swap are: remove the covered segments, rename the index files, rename the log file last;
//! the directory is synced after the renames.

/// What kind of file a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    /// `<base>.log`.
    Log,
    /// `<base>.index` or `<base>.timeindex`.
    Index,
    /// `<base>.log.cleaned`, `<base>.index.cleaned`, `<base>.timeindex.cleaned`.
    Cleaned,
    /// `<base>.index.swap` or `<base>.timeindex.swap`.
    IndexSwap,
    /// `<base>.log.swap`, with the offset after its last batch (from a scan).
    LogSwap {
        /// The swap segment's end offset.
        next_offset: i64,
    },
}

/// One file of the partition directory that matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeftoverFile {
    /// The base offset in its name.
    pub base: i64,
    /// Its kind.
    pub kind: FileKind,
}

/// One action of recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftoverAction {
    /// Remove `<base>.*.cleaned`.
    RemoveCleaned {
        /// Base offset.
        base: i64,
    },
    /// Remove `<base>.{index,timeindex}.swap` (their log swap never happened).
    RemoveIndexSwaps {
        /// Base offset.
        base: i64,
    },
    /// Remove every file of the old segment `base` (a committed swap replaces it).
    RemoveSegment {
        /// Base offset.
        base: i64,
    },
    /// Rename `<base>.{index,timeindex}.swap` then `<base>.log.swap` over the unsuffixed names.
    CompleteSwap {
        /// Base offset.
        base: i64,
    },
    /// Sync the directory.
    SyncDir,
}

/// The actions that bring a directory listing back to a consistent set of segments.
pub fn recover_clean_leftovers(files: &[LeftoverFile]) -> Vec<LeftoverAction> {
    let mut files = files.to_vec();
    files.sort();
    files.dedup();
    let mut out = Vec::new();
    let swaps: Vec<(i64, i64)> = files
        .iter()
        .filter_map(|f| match f.kind {
            FileKind::LogSwap { next_offset } => Some((f.base, next_offset)),
            _ => None,
        })
        .collect();
    let committed = |base: i64| swaps.iter().any(|(b, _)| *b == base);
    let mut cleaned: Vec<i64> = files
        .iter()
        .filter(|f| f.kind == FileKind::Cleaned)
        .map(|f| f.base)
        .collect();
    cleaned.dedup();
    out.extend(
        cleaned
            .into_iter()
            .map(|base| LeftoverAction::RemoveCleaned { base }),
    );
    let mut orphans: Vec<i64> = files
        .iter()
        .filter(|f| f.kind == FileKind::IndexSwap && !committed(f.base))
        .map(|f| f.base)
        .collect();
    orphans.dedup();
    out.extend(
        orphans
            .into_iter()
            .map(|base| LeftoverAction::RemoveIndexSwaps { base }),
    );
    for (base, end) in &swaps {
        let mut covered: Vec<i64> = files
            .iter()
            .filter(|f| matches!(f.kind, FileKind::Log | FileKind::Index))
            .map(|f| f.base)
            .filter(|b| b > base && b < end)
            .collect();
        covered.dedup();
        out.extend(
            covered
                .into_iter()
                .map(|base| LeftoverAction::RemoveSegment { base }),
        );
        out.push(LeftoverAction::CompleteSwap { base: *base });
    }
    if !out.is_empty() {
        out.push(LeftoverAction::SyncDir);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use FileKind::*;

    fn f(base: i64, kind: FileKind) -> LeftoverFile {
        LeftoverFile { base, kind }
    }

    #[test]
    fn cleaned_goes_swap_completes() {
        assert!(recover_clean_leftovers(&[f(0, Log), f(0, Index), f(10, Log)]).is_empty());
        let a = recover_clean_leftovers(&[f(0, Log), f(0, Cleaned), f(10, Log)]);
        assert_eq!(
            a,
            vec![
                LeftoverAction::RemoveCleaned { base: 0 },
                LeftoverAction::SyncDir
            ]
        );
        // A committed swap over [0, 30): segments 10 and 20 go, 30 stays.
        let a = recover_clean_leftovers(&[
            f(0, Log),
            f(0, LogSwap { next_offset: 30 }),
            f(0, IndexSwap),
            f(10, Log),
            f(20, Index),
            f(30, Log),
        ]);
        assert_eq!(
            a,
            vec![
                LeftoverAction::RemoveSegment { base: 10 },
                LeftoverAction::RemoveSegment { base: 20 },
                LeftoverAction::CompleteSwap { base: 0 },
                LeftoverAction::SyncDir,
            ]
        );
        // Index swaps without their log swap are unfinished.
        let a = recover_clean_leftovers(&[f(0, Log), f(0, IndexSwap)]);
        assert_eq!(
            a,
            vec![
                LeftoverAction::RemoveIndexSwaps { base: 0 },
                LeftoverAction::SyncDir
            ]
        );
    }
}
