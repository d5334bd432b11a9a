//! Reactions to the change feed: snapshots (which are also the read view) and the archive.
//! The third reaction, the expiry of lapsed holds, runs on a schedule over the expiry index
//! ([`crate::Inventory::sweep_expired_holds`]).

mod archiving;
mod snapshots;

pub use archiving::Archiver;
pub(crate) use snapshots::fold_tail;
pub use snapshots::Snapshotter;
