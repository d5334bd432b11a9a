//! The pure domain: value types, events, the fold, per-hold records and the decisions.
//! Nothing here does I/O or reads a clock.

pub mod access;
pub mod allocation;
pub mod buckets;
pub mod command;
pub mod decide;
pub mod event;
pub mod hold;
pub mod locations;
pub mod notices;
pub mod state;
pub mod stock_states;
pub mod stream;
pub mod transfer;
pub mod types;
pub mod whole;

pub use access::{Caller, ClientId, Scope};
pub use allocation::{AllocationRefusal, Allocator, Preference};
pub use buckets::{Layout, Move, MoveId};
pub use command::{Action, Command};
pub use decide::{PlaceRejection, Verdict};
pub use event::{Change, Event, Line, PlacedLine, RejectionCode};
pub use hold::{AfterSale, HoldLine, HoldStatus, HoldTerms};
pub use locations::{Location, LocationKind, Locations};
pub use notices::{notices, Notice, Noticed, StockFigures};
pub use state::{Figures, SkuState};
pub use stock_states::{Annotation, Reason, Reclassification, StockState, Unavailable};
pub use stream::{ItemAt, LocationId, Placement, StreamId};
pub use transfer::TransferId;
pub use types::{
    Bucket, BucketCount, CommandId, IdempotencyKey, InvalidValue, LowStockThreshold, Quantity,
    ReservationId, Sku, Timestamp, TtlSeconds, Units, Version,
};
pub use whole::{WholeItem, WholeNotice};
