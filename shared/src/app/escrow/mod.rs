//! The escrow of an item's stock at a location over its buckets, in one place: what one
//! decision appends to the buckets ([`Draft`]), where a reservation's line holds and how it
//! finds units ([`placement`]), and how a command's change is shared by the buckets
//! ([`rules`]). The pure arithmetic of moves, and the policy figures, are the domain's
//! ([`crate::domain::buckets`]); a location is a field of the streams named here
//! ([`crate::domain::StreamId`]), not a rule of its own.

mod draft;
pub(crate) mod placement;
pub(crate) mod rules;

pub(crate) use draft::Draft;
pub(crate) use rules::{
    gathered_in_part, note_locations, record, record_spread, refilled_in_part, SPREAD_MARKS,
};
