//! Decisions: every business rule lives here. Each takes the folded state (and the hold's record
//! when it acts on a hold) and `now`, and returns the change to record or a typed rejection.
//!
//! `now` is the caller's clock raised to the stream's clock ([`SkuState::now`]), so time never
//! runs backwards within a stream whatever the skew between the machines deciding.

use super::access::ClientId;
use super::command::{Action, Command};
use super::event::{Change, PlacedLine, RejectionCode};
use super::hold::{AfterSale, HoldLine, HoldStatus, HoldTerms};
use super::state::SkuState;
use super::stock_states::{Annotation, StockState};
use super::transfer::TransferId;
use super::types::{CommandId, Quantity, ReservationId, Timestamp};

/// Why a hold cannot be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceRejection {
    /// No event was ever recorded for the SKU.
    UnknownSku,
    /// Fewer units are for sale than requested (`available`: how many are, as clients are told).
    InsufficientStock {
        /// Units asked for.
        requested: i64,
        /// Units for sale at the decision.
        available: i64,
    },
}

/// What applying a queued command comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Record this change.
    Apply(Change),
    /// The command's effect is already there (a repeated checkout or release): nothing to record.
    AlreadyDone,
    /// The command cannot take effect; recorded as `CommandRejected`.
    Reject(RejectionCode),
}

impl SkuState {
    /// The decision time for this stream: the caller's clock, never earlier than the last event.
    pub fn now(&self, clock: Timestamp) -> Timestamp {
        clock.max(self.clock)
    }
}

/// Places a hold of `quantity` if that many units are available at `now`.
pub fn place_hold(
    state: &SkuState,
    reservation_id: &ReservationId,
    quantity: Quantity,
    terms: HoldTerms,
    lines: Vec<PlacedLine>,
    owner: &ClientId,
    now: Timestamp,
) -> Result<Change, PlaceRejection> {
    if !state.exists() {
        return Err(PlaceRejection::UnknownSku);
    }
    let available = state.for_sale(now);
    if quantity.units() > available {
        return Err(PlaceRejection::InsufficientStock {
            requested: quantity.units(),
            available,
        });
    }
    Ok(Change::HoldPlaced {
        reservation_id: reservation_id.clone(),
        quantity,
        expires_at: terms.expires_at,
        release_at: terms.release_at,
        lines,
        owner: Some(owner.clone()),
    })
}

/// Promises an active hold for longer. `Ok(None)` when the new terms would not extend it.
pub fn extend_hold(
    hold: &HoldLine,
    terms: HoldTerms,
    now: Timestamp,
) -> Result<Option<Change>, RejectionCode> {
    if hold.status_at(now) != HoldStatus::Active {
        return Err(RejectionCode::ReservationNotActive);
    }
    if terms.expires_at <= hold.expires_at {
        return Ok(None);
    }
    Ok(Some(Change::HoldExtended {
        reservation_id: hold.reservation_id.clone(),
        quantity: hold.quantity,
        expires_at: terms.expires_at,
        release_at: terms.release_at.max(hold.release_at),
        previous_release_at: hold.release_at,
    }))
}

/// Promises every line of a reservation for longer: each line's change (`None`: the line is
/// already promised that long). Refused, with where the reservation stands, unless it and each
/// of its lines is active.
pub fn extend_reservation(
    holds: &[HoldLine],
    terms: HoldTerms,
    now: Timestamp,
) -> Result<Vec<Option<Change>>, HoldStatus> {
    let status = HoldStatus::overall(holds.iter().map(|hold| hold.status_at(now)));
    if status != HoldStatus::Active {
        return Err(status);
    }
    holds
        .iter()
        .map(|hold| extend_hold(hold, terms, now).map_err(|_| hold.status_at(now)))
        .collect()
}

/// Decides a queued command. Hold commands need the hold's record (`None`: the reservation
/// holds nothing on this SKU, which the caller has told apart from an unknown reservation).
/// `release_grace_secs` is how long past its expiry a hold keeps counting: an expiry is
/// recorded only after it.
pub fn decide(
    state: &SkuState,
    hold: Option<&HoldLine>,
    command: &Command,
    now: Timestamp,
    release_grace_secs: i64,
) -> Verdict {
    let id = command.id;
    match (&command.action, hold) {
        (Action::ReceiveStock { quantity, why, .. }, _) => Verdict::Apply(Change::StockReceived {
            command_id: id,
            quantity: *quantity,
            why: why.clone(),
        }),
        (Action::AdjustStock { delta, why, .. }, _) => adjust(state, id, *delta, why),
        (Action::SetBuckets { count, .. }, _) if *count == state.layout.count => {
            Verdict::AlreadyDone
        }
        (Action::SetBuckets { count, .. }, _) => Verdict::Apply(Change::BucketsSet {
            command_id: id,
            count: *count,
        }),
        (Action::SetLowStock { below, .. }, _) if *below == state.low_stock_below => {
            Verdict::AlreadyDone
        }
        (Action::SetLowStock { below, .. }, _) => Verdict::Apply(Change::LowStockSet {
            command_id: id,
            below: *below,
        }),
        (
            Action::ReclassifyStock {
                states, quantity, ..
            },
            _,
        ) if quantity.units() > units_in(state, states.from, now) => {
            Verdict::Reject(RejectionCode::SourceLacksUnits)
        }
        (
            Action::ReclassifyStock {
                states,
                quantity,
                why,
                ..
            },
            _,
        ) => Verdict::Apply(Change::StockReclassified {
            command_id: id,
            states: *states,
            quantity: *quantity,
            why: why.clone(),
        }),
        (
            Action::CountStock {
                counted,
                expected,
                why,
                ..
            },
            _,
        ) => count(state, id, *counted, *expected, why),
        (Action::TransferStock { quantity, .. }, _) if quantity.units() > state.for_sale(now) => {
            Verdict::Reject(RejectionCode::SourceLacksUnits)
        }
        (
            Action::TransferStock {
                transfer_id,
                quantity,
                reference,
            },
            _,
        ) => Verdict::Apply(Change::TransferShipped {
            command_id: id,
            transfer_id: transfer_id.clone(),
            quantity: *quantity,
            reference: reference.clone(),
        }),
        (
            Action::ReceiveTransfer {
                transfer_id,
                quantity,
            },
            _,
        ) => receive_transfer(state, id, transfer_id, *quantity),
        (Action::CommitHold { .. }, Some(hold)) => {
            commit(state, hold, id, command.accepted_at, now)
        }
        (Action::ReleaseHold { .. }, Some(hold)) => release(hold, id),
        (Action::ExpireHold { .. }, Some(hold)) => expire(hold, now, release_grace_secs),
        (
            Action::FulfillHold {
                quantity,
                reference,
                ..
            },
            Some(hold),
        ) => after_sale(hold, AfterSale::Fulfill, *quantity, |quantity| {
            Change::HoldFulfilled {
                reservation_id: hold.reservation_id.clone(),
                command_id: id,
                quantity,
                reference: reference.clone(),
            }
        }),
        (Action::CancelHold { quantity, .. }, Some(hold)) => {
            after_sale(hold, AfterSale::Cancel, *quantity, |quantity| {
                Change::HoldCancelled {
                    reservation_id: hold.reservation_id.clone(),
                    command_id: id,
                    quantity,
                }
            })
        }
        (
            Action::ReturnHold {
                quantity,
                restock,
                reference,
                ..
            },
            Some(hold),
        ) => after_sale(hold, AfterSale::Return, Some(*quantity), |quantity| {
            Change::HoldReturned {
                reservation_id: hold.reservation_id.clone(),
                command_id: id,
                quantity,
                restock: *restock,
                reference: reference.clone(),
            }
        }),
        (_, None) => Verdict::Reject(RejectionCode::SkuNotInReservation),
    }
}

/// A transfer's receipt at its destination (`state`): of `asked` units, or of all still in
/// transit; refused when none are, or fewer than asked.
fn receive_transfer(
    state: &SkuState,
    command_id: CommandId,
    transfer_id: &TransferId,
    asked: Option<Quantity>,
) -> Verdict {
    let left = state.in_transit.get(transfer_id).copied().unwrap_or(0);
    let Ok(in_transit) = Quantity::new(left) else {
        return Verdict::Reject(RejectionCode::NothingInTransit);
    };
    match asked {
        Some(asked) if asked.units() > left => Verdict::Reject(RejectionCode::ExceedsInTransit),
        asked => Verdict::Apply(Change::TransferReceived {
            command_id,
            transfer_id: transfer_id.clone(),
            quantity: asked.unwrap_or(in_transit),
        }),
    }
}

fn adjust(state: &SkuState, command_id: CommandId, delta: i64, why: &Annotation) -> Verdict {
    match state.on_hand.checked_add(delta) {
        Some(on_hand) if on_hand >= 0 => Verdict::Apply(Change::StockAdjusted {
            command_id,
            delta,
            why: why.clone(),
        }),
        _ => Verdict::Reject(RejectionCode::OnHandWouldGoNegative),
    }
}

/// The units a move may take from `from` at `now`: what that state has. Units leave
/// `available` only if they are for sale at `now` (what holds and sales keep stays where it
/// is), so a move never takes a promised unit.
fn units_in(state: &SkuState, from: StockState, now: Timestamp) -> i64 {
    match from {
        StockState::Available => state.for_sale(now),
        set_aside => state.unavailable.units(set_aside).unwrap_or(0),
    }
}

/// A count: on-hand stock becomes `counted` (recorded as its delta). With `expected`, only if
/// the item still has that many on hand (a count taken against a figure that has moved since
/// is stale). A fact, as an adjustment is: it may leave the item short of its promises.
fn count(
    state: &SkuState,
    command_id: CommandId,
    counted: i64,
    expected: Option<i64>,
    why: &Annotation,
) -> Verdict {
    if expected.is_some_and(|expected| expected != state.on_hand) {
        return Verdict::Reject(RejectionCode::StaleCount);
    }
    if counted < 0 {
        return Verdict::Reject(RejectionCode::OnHandWouldGoNegative);
    }
    Verdict::Apply(Change::StockCounted {
        command_id,
        counted,
        delta: counted - state.on_hand,
        why: why.clone(),
    })
}

/// Checkout. In time (accepted by `expires_at`) and still counting: the held units are sold.
/// In time but processed after the release grace: the units are taken again if available.
fn commit(
    state: &SkuState,
    hold: &HoldLine,
    command_id: CommandId,
    accepted_at: Timestamp,
    now: Timestamp,
) -> Verdict {
    match hold.status {
        HoldStatus::Committed | HoldStatus::Fulfilled | HoldStatus::Cancelled => {
            return Verdict::AlreadyDone
        }
        HoldStatus::Released => return Verdict::Reject(RejectionCode::ReservationNotActive),
        HoldStatus::Active | HoldStatus::Expired => {}
    }
    if accepted_at > hold.expires_at {
        return Verdict::Reject(RejectionCode::ReservationExpired);
    }
    let still_counting = hold.counts_at(now);
    if !still_counting && state.available(now) < hold.quantity.units() {
        return Verdict::Reject(RejectionCode::HoldLapsedInsufficientStock);
    }
    Verdict::Apply(Change::HoldCommitted {
        reservation_id: hold.reservation_id.clone(),
        command_id,
        quantity: hold.quantity,
        release_at: hold.release_at,
        reacquired: !still_counting,
    })
}

fn release(hold: &HoldLine, command_id: CommandId) -> Verdict {
    match hold.status {
        HoldStatus::Active => Verdict::Apply(Change::HoldReleased {
            reservation_id: hold.reservation_id.clone(),
            command_id,
            quantity: hold.quantity,
            release_at: hold.release_at,
        }),
        HoldStatus::Released | HoldStatus::Expired => Verdict::AlreadyDone,
        HoldStatus::Committed | HoldStatus::Fulfilled | HoldStatus::Cancelled => {
            Verdict::Reject(RejectionCode::ReservationNotActive)
        }
    }
}

/// A shipment, a cancellation or a return of a checked-out line: `change` of the units it
/// takes ([`HoldLine::after_sale`]); nothing when it names none and none are left.
fn after_sale(
    hold: &HoldLine,
    after: AfterSale,
    asked: Option<Quantity>,
    change: impl FnOnce(Quantity) -> Change,
) -> Verdict {
    match hold.after_sale(after, asked) {
        Ok(Some(quantity)) => Verdict::Apply(change(quantity)),
        Ok(None) => Verdict::AlreadyDone,
        Err(reason) => Verdict::Reject(reason),
    }
}

/// A shipment takes units that are in the building: one that would take the item's on-hand
/// units below zero (an adjustment or a count left it with fewer than it sold) is rejected
/// `on_hand_would_go_negative`, as such an adjustment is. `item_on_hand` is the item's, over its
/// buckets; any other verdict stands.
pub fn shipped_from(item_on_hand: i64, verdict: Verdict) -> Verdict {
    match verdict {
        Verdict::Apply(Change::HoldFulfilled { quantity, .. })
            if quantity.units() > item_on_hand =>
        {
            Verdict::Reject(RejectionCode::OnHandWouldGoNegative)
        }
        verdict => verdict,
    }
}

/// Expiry is written only once the release grace after the hold's expiry is over, so it never
/// cuts the grace a checkout accepted in time relies on. (It may come before `release_at`,
/// which rounds that instant up to the hold's bucket: the expiry then stops the hold counting
/// a little earlier than the lazy release would.)
fn expire(hold: &HoldLine, now: Timestamp, release_grace_secs: i64) -> Verdict {
    let lapsed_at = hold
        .expires_at
        .plus_seconds(release_grace_secs)
        .min(hold.release_at);
    if hold.status == HoldStatus::Active && now >= lapsed_at {
        Verdict::Apply(Change::HoldExpired {
            reservation_id: hold.reservation_id.clone(),
            quantity: hold.quantity,
            release_at: hold.release_at,
        })
    } else {
        Verdict::AlreadyDone
    }
}

#[cfg(test)]
mod tests {
    //! Rules as given(events) / when(decision) / then(change or rejection).

    use super::*;
    use crate::domain::event::Event;
    use crate::domain::stock_states::{Reason, Reclassification};
    use crate::domain::stream::StreamId;
    use crate::domain::types::{LowStockThreshold, Sku, TtlSeconds};

    const GRACE: i64 = 120;

    fn sku() -> Sku {
        Sku::parse("SKU-1").unwrap()
    }
    fn stream() -> StreamId {
        StreamId::of(&sku())
    }
    fn qty(n: i64) -> Quantity {
        Quantity::new(n).unwrap()
    }
    fn at(secs: i64) -> Timestamp {
        Timestamp::from_millis(secs * 1000)
    }
    fn cmd_id(n: u128) -> CommandId {
        CommandId::parse(&uuid::Uuid::from_u128(n).to_string()).unwrap()
    }
    fn res_id(seq: u64) -> ReservationId {
        ReservationId::new(stream(), seq, seq)
    }
    fn owner() -> ClientId {
        ClientId::parse("storefront").unwrap()
    }

    /// A stream being built up by the test, with the hold records its hold events imply.
    struct Given {
        events: Vec<Event>,
    }

    fn given() -> Given {
        Given { events: Vec::new() }
    }

    impl Given {
        fn event(mut self, when: Timestamp, change: Change) -> Self {
            let seq = self.events.len() as u64 + 1;
            self.events.push(Event {
                actor: None,
                figures: None,
                stream: stream(),
                seq,
                at: when,
                change,
            });
            self
        }
        fn received(self, when: Timestamp, n: i64) -> Self {
            self.event(
                when,
                Change::StockReceived {
                    command_id: cmd_id(when.millis() as u128),
                    quantity: qty(n),
                    why: Annotation::received(None),
                },
            )
        }
        fn adjusted(self, when: Timestamp, delta: i64) -> Self {
            self.event(
                when,
                Change::StockAdjusted {
                    command_id: cmd_id(when.millis() as u128 + 1),
                    delta,
                    why: Annotation::from_text("count".into()),
                },
            )
        }
        /// A hold of `n` for `ttl` seconds placed at `when`; its id is derived from its seq.
        fn held(self, when: Timestamp, n: i64, ttl: i64) -> Self {
            let seq = self.events.len() as u64 + 1;
            let terms = HoldTerms::new(when, TtlSeconds::new(ttl).unwrap(), GRACE);
            self.event(
                when,
                Change::HoldPlaced {
                    reservation_id: res_id(seq),
                    quantity: qty(n),
                    expires_at: terms.expires_at,
                    release_at: terms.release_at,
                    lines: vec![],
                    owner: None,
                },
            )
        }
        fn state(&self) -> SkuState {
            SkuState::from_events(&self.events)
        }
        /// The record of the hold placed at `seq`, folded over the whole stream.
        fn hold(&self, seq: u64) -> HoldLine {
            let placed = &self.events[seq as usize - 1];
            let mut hold = HoldLine::placed(&stream(), &placed.change).unwrap();
            for event in &self.events[seq as usize..] {
                hold.evolve(&event.change);
            }
            hold
        }
        /// Decides `command` on hold `hold_seq` at `now` and records the change it makes.
        fn decided(self, hold_seq: u64, command: &Command, now: Timestamp) -> Self {
            let verdict = decide(
                &self.state(),
                Some(&self.hold(hold_seq)),
                command,
                now,
                GRACE,
            );
            self.apply(now, verdict)
        }
        fn apply(self, when: Timestamp, verdict: Verdict) -> Self {
            match verdict {
                Verdict::Apply(change) => self.event(when, change),
                other => panic!("expected a change, got {other:?}"),
            }
        }
    }

    fn command(action: Action, accepted_at: Timestamp) -> Command {
        Command {
            id: cmd_id(999),
            sku: sku(),
            accepted_at,
            action,
        }
    }
    fn checkout(hold_seq: u64, accepted_at: Timestamp) -> Command {
        command(
            Action::CommitHold {
                reservation_id: res_id(hold_seq),
            },
            accepted_at,
        )
    }
    fn release_cmd(hold_seq: u64) -> Command {
        command(
            Action::ReleaseHold {
                reservation_id: res_id(hold_seq),
            },
            at(0),
        )
    }
    fn place(g: &Given, n: i64, now: Timestamp) -> Result<Change, PlaceRejection> {
        let terms = HoldTerms::new(now, TtlSeconds::DEFAULT, GRACE);
        place_hold(
            &g.state(),
            &res_id(99),
            qty(n),
            terms,
            vec![],
            &owner(),
            now,
        )
    }

    #[test]
    fn a_hold_is_placed_when_enough_stock_is_available() {
        let g = given().received(at(0), 10);
        assert!(matches!(
            place(&g, 10, at(1)),
            Ok(Change::HoldPlaced { .. })
        ));
    }

    #[test]
    fn a_hold_is_refused_when_it_asks_for_more_than_is_available() {
        let g = given().received(at(0), 10).held(at(1), 7, 900);
        assert_eq!(
            place(&g, 4, at(2)),
            Err(PlaceRejection::InsufficientStock {
                requested: 4,
                available: 3
            })
        );
    }

    #[test]
    fn a_hold_on_a_sku_with_no_history_is_refused_as_unknown() {
        assert_eq!(place(&given(), 1, at(0)), Err(PlaceRejection::UnknownSku));
    }

    #[test]
    fn available_is_on_hand_less_committed_less_held() {
        let g = given()
            .received(at(0), 10)
            .held(at(1), 3, 900)
            .held(at(2), 2, 900);
        let g = g.decided(2, &checkout(2, at(3)), at(3));
        let state = g.state();
        assert_eq!(
            (state.on_hand, state.committed, state.held(at(4))),
            (10, 3, 2)
        );
        assert_eq!(state.available(at(4)), 5);
    }

    #[test]
    fn a_hold_keeps_counting_through_the_grace_after_expiry() {
        let g = given().received(at(0), 5).held(at(0), 5, 60);
        let state = g.state();
        assert_eq!(state.available(at(60)), 0, "at expiry");
        assert_eq!(state.available(at(60 + GRACE - 1)), 0, "inside the grace");
    }

    #[test]
    fn a_hold_stops_counting_after_the_grace_even_without_an_expiry_event() {
        let g = given().received(at(0), 5).held(at(0), 5, 60);
        assert_eq!(g.state().available(at(60 + GRACE)), 5);
        assert!(place(&g, 5, at(60 + GRACE)).is_ok());
    }

    #[test]
    fn a_checkout_accepted_in_time_commits_the_held_units() {
        let g = given().received(at(0), 5).held(at(0), 2, 60);
        let verdict = decide(
            &g.state(),
            Some(&g.hold(2)),
            &checkout(2, at(59)),
            at(100),
            GRACE,
        );
        assert!(matches!(
            verdict,
            Verdict::Apply(Change::HoldCommitted {
                reacquired: false,
                ..
            })
        ));
        let g = g.apply(at(100), verdict);
        assert_eq!(g.state().committed, 2);
        assert_eq!(g.state().held(at(100)), 0);
        assert_eq!(g.state().available(at(100)), 3);
    }

    #[test]
    fn a_checkout_accepted_after_expiry_is_rejected_as_expired() {
        let g = given().received(at(0), 5).held(at(0), 2, 60);
        assert_eq!(
            decide(
                &g.state(),
                Some(&g.hold(2)),
                &checkout(2, at(61)),
                at(61),
                GRACE
            ),
            Verdict::Reject(RejectionCode::ReservationExpired)
        );
    }

    #[test]
    fn a_checkout_processed_after_the_grace_takes_the_units_again_when_they_are_available() {
        let g = given().received(at(0), 5).held(at(0), 2, 60);
        let late = at(60 + GRACE + 10);
        let verdict = decide(
            &g.state(),
            Some(&g.hold(2)),
            &checkout(2, at(30)),
            late,
            GRACE,
        );
        assert!(matches!(
            verdict,
            Verdict::Apply(Change::HoldCommitted {
                reacquired: true,
                ..
            })
        ));
        let g = g.apply(late, verdict);
        assert_eq!((g.state().committed, g.state().available(late)), (2, 3));
    }

    #[test]
    fn a_checkout_processed_after_the_grace_is_rejected_when_the_units_are_gone() {
        let g = given().received(at(0), 2).held(at(0), 2, 60);
        let late = at(60 + GRACE + 10);
        let g = g.held(late, 1, 900);
        assert_eq!(
            decide(
                &g.state(),
                Some(&g.hold(2)),
                &checkout(2, at(30)),
                late,
                GRACE
            ),
            Verdict::Reject(RejectionCode::HoldLapsedInsufficientStock)
        );
    }

    #[test]
    fn a_checkout_after_an_expiry_event_still_commits_if_it_was_accepted_in_time() {
        let g = given().received(at(0), 5).held(at(0), 2, 60);
        let after_grace = at(60 + GRACE);
        let g = g.decided(2, &expire_cmd(2), after_grace);
        assert_eq!(g.hold(2).status, HoldStatus::Expired);
        let verdict = decide(
            &g.state(),
            Some(&g.hold(2)),
            &checkout(2, at(59)),
            after_grace,
            GRACE,
        );
        assert!(matches!(
            verdict,
            Verdict::Apply(Change::HoldCommitted {
                reacquired: true,
                ..
            })
        ));
    }

    fn expire_cmd(hold_seq: u64) -> Command {
        command(
            Action::ExpireHold {
                reservation_id: res_id(hold_seq),
            },
            at(0),
        )
    }

    #[test]
    fn a_low_stock_threshold_is_set_once_and_kept_by_the_fold() {
        let set = |below| {
            command(
                Action::SetLowStock {
                    location: Default::default(),
                    below: LowStockThreshold::new(below).unwrap(),
                },
                at(0),
            )
        };
        let g = given().received(at(0), 5);
        let verdict = decide(&g.state(), None, &set(3), at(1), GRACE);
        assert_eq!(
            verdict,
            Verdict::Apply(Change::LowStockSet {
                command_id: cmd_id(999),
                below: LowStockThreshold::new(3).unwrap(),
            })
        );
        let g = g.apply(at(1), verdict);
        assert_eq!(g.state().low_stock_below.units(), 3);
        assert_eq!(
            decide(&g.state(), None, &set(3), at(2), GRACE),
            Verdict::AlreadyDone
        );
        assert!(matches!(
            decide(&g.state(), None, &set(0), at(2), GRACE),
            Verdict::Apply(Change::LowStockSet { below, .. }) if below.is_off()
        ));
    }

    #[test]
    fn a_repeated_checkout_is_already_done() {
        let g = given().received(at(0), 5).held(at(0), 2, 60);
        let g = g.decided(2, &checkout(2, at(1)), at(1));
        assert_eq!(
            decide(
                &g.state(),
                Some(&g.hold(2)),
                &checkout(2, at(1)),
                at(2),
                GRACE
            ),
            Verdict::AlreadyDone
        );
    }

    #[test]
    fn a_released_hold_frees_its_units_and_cannot_be_checked_out() {
        let g = given().received(at(0), 5).held(at(0), 2, 60);
        let g = g.decided(2, &release_cmd(2), at(1));
        assert_eq!(g.state().available(at(1)), 5);
        assert_eq!(
            decide(
                &g.state(),
                Some(&g.hold(2)),
                &checkout(2, at(1)),
                at(2),
                GRACE
            ),
            Verdict::Reject(RejectionCode::ReservationNotActive)
        );
        assert_eq!(
            decide(&g.state(), Some(&g.hold(2)), &release_cmd(2), at(2), GRACE),
            Verdict::AlreadyDone
        );
    }

    #[test]
    fn a_committed_hold_cannot_be_released() {
        let g = given().received(at(0), 5).held(at(0), 2, 60);
        let g = g.decided(2, &checkout(2, at(1)), at(1));
        assert_eq!(
            decide(&g.state(), Some(&g.hold(2)), &release_cmd(2), at(2), GRACE),
            Verdict::Reject(RejectionCode::ReservationNotActive)
        );
    }

    #[test]
    fn an_expiry_is_not_written_before_the_release_grace_is_over() {
        let g = given().received(at(0), 5).held(at(0), 2, 60);
        assert_eq!(
            decide(&g.state(), Some(&g.hold(2)), &expire_cmd(2), at(61), GRACE),
            Verdict::AlreadyDone
        );
        assert!(matches!(
            decide(
                &g.state(),
                Some(&g.hold(2)),
                &expire_cmd(2),
                at(60 + GRACE),
                GRACE
            ),
            Verdict::Apply(Change::HoldExpired { .. })
        ));
    }

    #[test]
    fn a_long_hold_expires_when_its_grace_is_over_not_when_its_bucket_ends() {
        let g = given().received(at(0), 5).held(at(1), 2, 3_600);
        let lapsed = at(1 + 3_600 + GRACE);
        assert!(g.hold(2).release_at > lapsed);
        let g = g.decided(2, &expire_cmd(2), lapsed);
        assert_eq!(g.hold(2).status, HoldStatus::Expired);
        assert_eq!(g.state().available(lapsed), 5);
    }

    #[test]
    fn an_adjustment_that_would_make_on_hand_negative_is_rejected() {
        let g = given().received(at(0), 5);
        let adjust = command(
            Action::AdjustStock {
                location: Default::default(),
                delta: -6,
                why: Annotation::from_text("count".into()),
            },
            at(1),
        );
        assert_eq!(
            decide(&g.state(), None, &adjust, at(1), GRACE),
            Verdict::Reject(RejectionCode::OnHandWouldGoNegative)
        );
    }

    #[test]
    fn an_adjustment_below_what_is_held_is_recorded_and_leaves_the_item_short() {
        let g = given()
            .received(at(0), 5)
            .held(at(0), 4, 900)
            .adjusted(at(1), -3);
        let state = g.state();
        assert_eq!((state.on_hand, state.available(at(2))), (2, -2));
        assert_eq!(
            state.for_sale(at(2)),
            0,
            "short: none for sale, never fewer"
        );
        assert_eq!(
            place(&g, 1, at(2)),
            Err(PlaceRejection::InsufficientStock {
                requested: 1,
                available: 0
            })
        );
        let g = g.received(at(3), 3);
        assert!(place(&g, 1, at(4)).is_ok(), "restocked");
    }

    fn move_cmd(from: StockState, to: StockState, n: i64) -> Command {
        command(
            Action::ReclassifyStock {
                location: Default::default(),
                states: Reclassification::new(from, to).unwrap(),
                quantity: qty(n),
                why: Annotation::because(Reason::Damaged),
            },
            at(1),
        )
    }
    fn count_cmd(counted: i64, expected: Option<i64>) -> Command {
        command(
            Action::CountStock {
                location: Default::default(),
                counted,
                expected,
                why: Annotation {
                    reason: Reason::CycleCount,
                    note: Some("aisle 4".into()),
                    reference: None,
                },
            },
            at(1),
        )
    }
    impl Given {
        /// Decides a command that needs no hold at `now` and records its change.
        fn decided_item(self, command: &Command, now: Timestamp) -> Self {
            let verdict = decide(&self.state(), None, command, now, GRACE);
            self.apply(now, verdict)
        }
    }

    #[test]
    fn units_set_aside_stay_on_hand_and_are_not_for_sale() {
        let g = given().received(at(0), 10).decided_item(
            &move_cmd(StockState::Available, StockState::Damaged, 3),
            at(1),
        );
        let state = g.state();
        assert_eq!(state.on_hand, 10);
        assert_eq!(state.unavailable.damaged, 3);
        assert_eq!(state.available(at(2)), 7);
        assert_eq!(
            place(&g, 8, at(2)),
            Err(PlaceRejection::InsufficientStock {
                requested: 8,
                available: 7
            })
        );
        // Inspected and sellable again, in two steps.
        let g = g
            .decided_item(
                &move_cmd(StockState::Damaged, StockState::QualityControl, 3),
                at(3),
            )
            .decided_item(
                &move_cmd(StockState::QualityControl, StockState::Available, 2),
                at(4),
            );
        let state = g.state();
        assert_eq!(
            (state.unavailable.damaged, state.unavailable.quality_control),
            (0, 1)
        );
        assert_eq!(state.available(at(5)), 9);
    }

    #[test]
    fn a_move_never_takes_units_that_holds_or_sales_keep() {
        let g = given()
            .received(at(0), 10)
            .held(at(0), 4, 900)
            .decided(2, &checkout(2, at(1)), at(1))
            .held(at(1), 3, 900);
        // 10 on hand, 4 sold, 3 held: 3 for sale.
        let to_safety = move_cmd(StockState::Available, StockState::SafetyStock, 4);
        assert_eq!(
            decide(&g.state(), None, &to_safety, at(2), GRACE),
            Verdict::Reject(RejectionCode::SourceLacksUnits)
        );
        let g = g.decided_item(
            &move_cmd(StockState::Available, StockState::SafetyStock, 3),
            at(2),
        );
        assert_eq!(g.state().for_sale(at(2)), 0);
        assert_eq!(
            g.state().on_hand - g.state().committed - g.state().held(at(2)),
            3,
            "the sold and the held units are all still there"
        );
        // Nothing is set aside as damaged: a move out of it has no source.
        let from_damaged = move_cmd(StockState::Damaged, StockState::Available, 1);
        assert_eq!(
            decide(&g.state(), None, &from_damaged, at(2), GRACE),
            Verdict::Reject(RejectionCode::SourceLacksUnits)
        );
    }

    #[test]
    fn a_count_sets_on_hand_by_its_delta_and_a_stale_one_is_refused() {
        let g = given().received(at(0), 10).adjusted(at(1), -1);
        assert_eq!(
            decide(&g.state(), None, &count_cmd(7, Some(10)), at(2), GRACE),
            Verdict::Reject(RejectionCode::StaleCount),
            "counted against 10, the item has 9 now"
        );
        let g = g.decided_item(&count_cmd(7, Some(9)), at(2));
        match &g.events.last().unwrap().change {
            Change::StockCounted {
                counted,
                delta,
                why,
                ..
            } => assert_eq!((*counted, *delta, why.reason), (7, -2, Reason::CycleCount)),
            other => panic!("{other:?}"),
        }
        assert_eq!(g.state().on_hand, 7);
        // Without `expected`, a plain set; the same figure again is still a count on record.
        let g = g.decided_item(&count_cmd(12, None), at(3));
        let g = g.decided_item(&count_cmd(12, None), at(4));
        assert_eq!(g.state().on_hand, 12);
        assert_eq!(g.events.len(), 5);
    }

    #[test]
    fn a_count_below_what_is_promised_leaves_the_item_short() {
        let g = given()
            .received(at(0), 5)
            .held(at(0), 4, 900)
            .decided_item(&count_cmd(2, None), at(1));
        let state = g.state();
        assert_eq!((state.on_hand, state.available(at(2))), (2, -2));
        assert_eq!(state.for_sale(at(2)), 0);
    }

    #[test]
    fn a_snapshot_from_before_the_states_reads_as_none_set_aside_and_one_without_any_leaves_them_out(
    ) {
        let g = given().received(at(0), 5);
        let json = serde_json::to_value(g.state()).unwrap();
        assert!(json.get("unavailable").is_none(), "{json}");
        let read: SkuState = serde_json::from_value(json).unwrap();
        assert_eq!(read, g.state());
        let g = g.decided_item(
            &move_cmd(StockState::Available, StockState::Damaged, 1),
            at(1),
        );
        let json = serde_json::to_value(g.state()).unwrap();
        assert_eq!(json["unavailable"]["damaged"], 1, "{json}");
    }

    #[test]
    fn the_new_events_and_commands_read_back_as_written() {
        let g = given()
            .received(at(0), 5)
            .decided_item(
                &move_cmd(StockState::Available, StockState::QualityControl, 2),
                at(1),
            )
            .decided_item(&count_cmd(4, Some(5)), at(2));
        for event in &g.events {
            let json = serde_json::to_string(event).unwrap();
            assert_eq!(&serde_json::from_str::<Event>(&json).unwrap(), event);
        }
        let moved = serde_json::to_value(&g.events[1]).unwrap();
        assert_eq!(moved["type"], "stock_reclassified");
        assert_eq!(
            (&moved["from"], &moved["to"]),
            (
                &serde_json::json!("available"),
                &serde_json::json!("quality_control")
            )
        );
        for action in [
            move_cmd(StockState::SafetyStock, StockState::Available, 1),
            count_cmd(3, Some(4)),
            fulfill(2, None),
            fulfill(2, Some(1)),
            cancel(2, Some(1)),
            take_back(2, 1, false),
        ] {
            let json = serde_json::to_string(&action).unwrap();
            assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), action);
        }
        let to_itself = r#"{"id":"00000000-0000-0000-0000-000000000001","sku":"A","accepted_at":0,
            "type":"reclassify_stock","from":"damaged","to":"damaged","quantity":1,"reason":"other"}"#;
        assert!(serde_json::from_str::<Command>(to_itself).is_err());
    }

    #[test]
    fn an_extension_moves_the_hold_to_a_later_release() {
        let g = given().received(at(0), 5).held(at(0), 2, 60);
        let terms = HoldTerms::new(at(30), TtlSeconds::new(600).unwrap(), GRACE);
        let change = extend_hold(&g.hold(2), terms, at(30)).unwrap().unwrap();
        let g = g.event(at(30), change);
        assert_eq!(g.hold(2).expires_at, at(630));
        assert_eq!(g.state().available(at(60 + GRACE + 1)), 3, "still counting");
        assert_eq!(g.state().available(at(630 + GRACE)), 5);
    }

    #[test]
    fn an_expired_hold_cannot_be_extended() {
        let g = given().received(at(0), 5).held(at(0), 2, 60);
        let terms = HoldTerms::new(at(61), TtlSeconds::new(600).unwrap(), GRACE);
        assert_eq!(
            extend_hold(&g.hold(2), terms, at(61)),
            Err(RejectionCode::ReservationNotActive)
        );
    }

    #[test]
    fn time_in_a_stream_never_runs_backwards() {
        let g = given().received(at(100), 5);
        assert_eq!(g.state().now(at(50)), at(100));
        assert_eq!(g.state().now(at(150)), at(150));
    }

    #[test]
    fn state_stays_small_with_holds_of_every_length_from_a_minute_to_a_day() {
        let mut g = given().received(at(0), 200_000);
        for i in 0..100_000 {
            g = g.held(Timestamp::from_millis(i * 10), 1, 60 + i % 86_341);
        }
        let state = g.state();
        assert!(state.held(state.clock) > 99_000);
        assert!(state.bucket_count() <= 2_700, "{}", state.bucket_count());
        let size = serde_json::to_vec(&state).unwrap().len();
        assert!(size < 100_000, "{size} bytes");
    }

    #[test]
    fn state_stays_small_with_a_hundred_thousand_holds() {
        let mut g = given().received(at(0), 200_000);
        for i in 0..100_000 {
            g = g.held(Timestamp::from_millis(i * 10), 1, 900);
        }
        let state = g.state();
        assert_eq!(state.held(at(1_000)), 100_000);
        assert!(state.bucket_count() <= 1_100, "{}", state.bucket_count());
        let size = serde_json::to_vec(&state).unwrap().len();
        assert!(size < 40_000, "{size} bytes");
    }

    fn fulfill(hold_seq: u64, n: Option<i64>) -> Command {
        command(
            Action::FulfillHold {
                reservation_id: res_id(hold_seq),
                quantity: n.map(qty),
                reference: Some("parcel-1".into()),
            },
            at(0),
        )
    }
    fn cancel(hold_seq: u64, n: Option<i64>) -> Command {
        command(
            Action::CancelHold {
                reservation_id: res_id(hold_seq),
                quantity: n.map(qty),
            },
            at(0),
        )
    }
    fn take_back(hold_seq: u64, n: i64, restock: bool) -> Command {
        command(
            Action::ReturnHold {
                reservation_id: res_id(hold_seq),
                quantity: qty(n),
                restock,
                reference: None,
            },
            at(0),
        )
    }
    /// 10 received, a hold of 4 (seq 2) checked out at 10 s.
    fn sold_four() -> Given {
        given()
            .received(at(0), 10)
            .held(at(1), 4, 900)
            .decided(2, &checkout(2, at(10)), at(10))
    }
    fn verdict(g: &Given, hold_seq: u64, command: &Command) -> Verdict {
        decide(&g.state(), Some(&g.hold(hold_seq)), command, at(20), GRACE)
    }
    fn figures(g: &Given) -> (i64, i64, i64) {
        let state = g.state();
        (state.on_hand, state.committed, state.available(at(20)))
    }

    #[test]
    fn a_shipment_takes_the_units_out_of_on_hand_and_committed_and_leaves_available_as_it_was() {
        let g = sold_four();
        assert_eq!(figures(&g), (10, 4, 6));
        let g = g.decided(2, &fulfill(2, Some(3)), at(20));
        assert_eq!(figures(&g), (7, 1, 6));
        let hold = g.hold(2);
        assert_eq!((hold.status, hold.fulfilled), (HoldStatus::Committed, 3));
        let g = g.decided(2, &fulfill(2, None), at(21));
        assert_eq!(figures(&g), (6, 0, 6), "the rest ships");
        assert_eq!(g.hold(2).status, HoldStatus::Fulfilled);
        assert_eq!(
            verdict(&g, 2, &fulfill(2, None)),
            Verdict::AlreadyDone,
            "all shipped: nothing left to ship"
        );
        assert_eq!(
            verdict(&g, 2, &fulfill(2, Some(1))),
            Verdict::Reject(RejectionCode::ExceedsUnshipped)
        );
    }

    #[test]
    fn a_shipment_of_units_an_adjustment_found_missing_is_rejected_on_hand_would_go_negative() {
        let g = sold_four().adjusted(at(15), -9);
        assert_eq!(figures(&g).0, 1, "one unit left of the four sold");
        let two = verdict(&g, 2, &fulfill(2, Some(2)));
        assert!(matches!(two, Verdict::Apply(_)), "{two:?}");
        assert_eq!(
            shipped_from(g.state().on_hand, two),
            Verdict::Reject(RejectionCode::OnHandWouldGoNegative)
        );
        let one = verdict(&g, 2, &fulfill(2, Some(1)));
        assert_eq!(shipped_from(g.state().on_hand, one.clone()), one);
    }

    #[test]
    fn a_shipment_never_takes_more_than_the_line_has_left_to_ship() {
        let g = sold_four();
        assert_eq!(
            verdict(&g, 2, &fulfill(2, Some(5))),
            Verdict::Reject(RejectionCode::ExceedsUnshipped)
        );
        let g = g.decided(2, &cancel(2, Some(1)), at(20));
        assert_eq!(
            verdict(&g, 2, &fulfill(2, Some(4))),
            Verdict::Reject(RejectionCode::ExceedsUnshipped),
            "one of the four was cancelled"
        );
    }

    #[test]
    fn a_cancellation_before_shipping_gives_the_units_back_to_sale() {
        let g = sold_four().decided(2, &cancel(2, Some(1)), at(20));
        assert_eq!(figures(&g), (10, 3, 7));
        let g = g.decided(2, &fulfill(2, Some(2)), at(21));
        let g = g.decided(2, &cancel(2, None), at(22));
        assert_eq!(figures(&g), (8, 0, 8));
        let hold = g.hold(2);
        assert_eq!(
            (hold.status, hold.fulfilled, hold.cancelled),
            (HoldStatus::Fulfilled, 2, 2),
            "a line partly shipped and the rest cancelled reads fulfilled"
        );
    }

    #[test]
    fn an_order_cancelled_whole_reads_cancelled() {
        let g = sold_four().decided(2, &cancel(2, None), at(20));
        for event in &g.events {
            let json = serde_json::to_string(event).unwrap();
            assert_eq!(&serde_json::from_str::<Event>(&json).unwrap(), event);
        }
        assert_eq!(figures(&g), (10, 0, 10));
        assert_eq!(g.hold(2).status, HoldStatus::Cancelled);
        assert_eq!(
            verdict(&g, 2, &checkout(2, at(10))),
            Verdict::AlreadyDone,
            "a checkout delivered again changes nothing"
        );
        assert_eq!(
            verdict(&g, 2, &release_cmd(2)),
            Verdict::Reject(RejectionCode::ReservationNotActive)
        );
    }

    #[test]
    fn a_hold_not_checked_out_is_neither_shipped_nor_cancelled_nor_returned() {
        let g = given().received(at(0), 10).held(at(1), 4, 900);
        for command in [fulfill(2, None), cancel(2, Some(1)), take_back(2, 1, true)] {
            assert_eq!(
                verdict(&g, 2, &command),
                Verdict::Reject(RejectionCode::ReservationNotCheckedOut),
                "{command:?}"
            );
        }
    }

    #[test]
    fn a_return_brings_shipped_units_back_to_sale_or_sets_them_aside_as_damaged() {
        let g = sold_four().decided(2, &fulfill(2, Some(3)), at(20));
        assert_eq!(
            verdict(&g, 2, &take_back(2, 4, true)),
            Verdict::Reject(RejectionCode::ExceedsShipped),
            "only three shipped"
        );
        let g = g.decided(2, &take_back(2, 1, true), at(21));
        assert_eq!(figures(&g), (8, 1, 7), "restocked: for sale again");
        let g = g.decided(2, &take_back(2, 2, false), at(22));
        assert_eq!(figures(&g), (10, 1, 7), "damaged: on hand, not for sale");
        assert_eq!(g.state().unavailable.damaged, 2);
        assert_eq!(g.hold(2).returned, 3);
        assert_eq!(
            verdict(&g, 2, &take_back(2, 1, true)),
            Verdict::Reject(RejectionCode::ExceedsShipped),
            "every unit shipped came back"
        );
    }
}
