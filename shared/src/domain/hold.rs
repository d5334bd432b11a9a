//! One reservation's hold on one SKU: its terms and where it is in its life. This is the per-hold
//! record that is looked up directly by reservation id (never kept inside the SKU's state).

use serde::{Deserialize, Serialize};

use super::event::{Change, RejectionCode};
use super::stream::StreamId;
use super::types::{Quantity, ReservationId, Sku, Timestamp, TtlSeconds};

/// Where a hold is in its life.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    /// Units are promised and can be checked out until `expires_at`.
    Active,
    /// Checked out: the units are sold, and some are not shipped yet.
    Committed,
    /// Checked out, and every unit sold has shipped (some may have been cancelled).
    Fulfilled,
    /// Checked out, and every unit sold was cancelled before it shipped.
    Cancelled,
    /// Given back by the shopper.
    Released,
    /// Ran out without a checkout.
    Expired,
}

impl HoldStatus {
    /// A reservation's status from its lines': active while any line is; otherwise committed
    /// while any line has units sold and not shipped; fulfilled if any line shipped, cancelled
    /// if any sale was cancelled, released if any line was given back, else expired.
    pub fn overall(statuses: impl Iterator<Item = HoldStatus> + Clone) -> HoldStatus {
        [
            HoldStatus::Active,
            HoldStatus::Committed,
            HoldStatus::Fulfilled,
            HoldStatus::Cancelled,
            HoldStatus::Released,
        ]
        .into_iter()
        .find(|wanted| statuses.clone().any(|status| status == *wanted))
        .unwrap_or(HoldStatus::Expired)
    }

    /// Whether a reservation standing here may be checked out: only while it is active.
    pub fn may_check_out(self) -> bool {
        self == HoldStatus::Active
    }

    /// Whether a reservation standing here may be released: unless it is checked out.
    pub fn may_release(self) -> bool {
        !self.is_sold()
    }

    /// Whether the units were sold at checkout (whatever became of them since).
    pub fn is_sold(self) -> bool {
        matches!(
            self,
            HoldStatus::Committed | HoldStatus::Fulfilled | HoldStatus::Cancelled
        )
    }

    /// Whether a reservation standing here may be asked `after`: a shipment or a cancellation
    /// while units sold are not shipped (committed), a return once some have shipped.
    pub fn may_settle(self, after: AfterSale) -> bool {
        match after {
            AfterSale::Fulfill | AfterSale::Cancel => self == HoldStatus::Committed,
            AfterSale::Return => matches!(self, HoldStatus::Committed | HoldStatus::Fulfilled),
        }
    }
}

/// What becomes of units sold at checkout: they ship, the sale is cancelled before they ship,
/// or shipped units come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AfterSale {
    /// Sold units ship: they leave on-hand stock and the sales not yet shipped.
    Fulfill,
    /// Sold units not yet shipped are given back to sale.
    Cancel,
    /// Shipped units come back into the building.
    Return,
}

/// When a hold stops being promised and when it stops counting against availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldTerms {
    /// Last instant a checkout is accepted.
    pub expires_at: Timestamp,
    /// First instant the hold no longer counts against availability: `expires_at` plus the release
    /// grace, rounded up to the hold's release bucket.
    pub release_at: Timestamp,
}

impl HoldTerms {
    /// Release windows up to this long are bucketed per second, longer ones per minute, so a SKU
    /// keeps at most ~1,200 + ~1,450 buckets whatever its number of holds.
    const FINE_WINDOW_MILLIS: i64 = 20 * 60 * 1000;

    /// Terms of a hold decided at `now` for `ttl`, counted `release_grace_secs` past its expiry.
    pub fn new(now: Timestamp, ttl: TtlSeconds, release_grace_secs: i64) -> Self {
        Self::expiring(now, now.plus_seconds(ttl.seconds()), release_grace_secs)
    }

    /// Terms of an extension, decided at `now` for `ttl`, of a hold placed at `placed_at`: `ttl`
    /// from now, but never past [`TtlSeconds::MAX`] from its placing. A hold's whole life is
    /// bounded as its first promise is, which everything that must outlive a hold rests on (its
    /// events' live retention, the expiry sweep's first look back: `LONGEST_HOLD_LIFE_SECS`);
    /// and no client keeps units from the others for good by extending.
    pub fn extended(
        placed_at: Timestamp,
        now: Timestamp,
        ttl: TtlSeconds,
        release_grace_secs: i64,
    ) -> Self {
        let latest = placed_at.plus_seconds(i64::from(TtlSeconds::MAX));
        let expires_at = now.plus_seconds(ttl.seconds()).min(latest);
        Self::expiring(now, expires_at, release_grace_secs)
    }

    fn expiring(now: Timestamp, expires_at: Timestamp, release_grace_secs: i64) -> Self {
        let unrounded = expires_at.plus_seconds(release_grace_secs);
        let step = if unrounded.millis() - now.millis() <= Self::FINE_WINDOW_MILLIS {
            1_000
        } else {
            60_000
        };
        Self {
            expires_at,
            release_at: unrounded.ceil_to(step),
        }
    }
}

/// A reservation's hold on one SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldLine {
    /// The reservation this hold belongs to.
    pub reservation_id: ReservationId,
    /// The stream the units are held in (named `sku` in what is stored).
    #[serde(rename = "sku")]
    pub stream: StreamId,
    /// Units held.
    pub quantity: Quantity,
    /// Last instant a checkout is accepted.
    pub expires_at: Timestamp,
    /// First instant the hold stops counting against availability.
    pub release_at: Timestamp,
    /// Recorded status (an active hold past its expiry reads as expired: see [`HoldLine::status_at`]).
    pub status: HoldStatus,
    /// Units sold that have shipped.
    #[serde(default, skip_serializing_if = "super::types::is_zero")]
    pub fulfilled: i64,
    /// Units sold whose sale was cancelled before they shipped.
    #[serde(default, skip_serializing_if = "super::types::is_zero")]
    pub cancelled: i64,
    /// Units shipped that came back.
    #[serde(default, skip_serializing_if = "super::types::is_zero")]
    pub returned: i64,
}

impl HoldLine {
    /// The hold a `HoldPlaced` change on `stream` starts; `None` for any other change.
    pub fn placed(stream: &StreamId, change: &Change) -> Option<Self> {
        match change {
            Change::HoldPlaced {
                reservation_id,
                quantity,
                expires_at,
                release_at,
                ..
            } => Some(Self {
                reservation_id: reservation_id.clone(),
                stream: stream.clone(),
                quantity: *quantity,
                expires_at: *expires_at,
                release_at: *release_at,
                status: HoldStatus::Active,
                fulfilled: 0,
                cancelled: 0,
                returned: 0,
            }),
            _ => None,
        }
    }

    /// Folds one of this hold's events in; other changes leave it as it is.
    pub fn evolve(&mut self, change: &Change) {
        if change.reservation_id() != Some(&self.reservation_id) {
            return;
        }
        match change {
            Change::HoldExtended {
                expires_at,
                release_at,
                ..
            } => {
                self.expires_at = *expires_at;
                self.release_at = *release_at;
            }
            Change::HoldCommitted { .. } => self.status = HoldStatus::Committed,
            Change::HoldReleased { .. } => self.status = HoldStatus::Released,
            Change::HoldExpired { .. } => self.status = HoldStatus::Expired,
            Change::HoldFulfilled { quantity, .. } => self.fulfilled += quantity.units(),
            Change::HoldCancelled { quantity, .. } => self.cancelled += quantity.units(),
            Change::HoldReturned { quantity, .. } => self.returned += quantity.units(),
            _ => {}
        }
        if self.status.is_sold() && self.left_to(AfterSale::Fulfill) == 0 {
            self.status = if self.fulfilled > 0 {
                HoldStatus::Fulfilled
            } else {
                HoldStatus::Cancelled
            };
        }
    }

    /// The units `after` takes on this line: those `asked`, or, when it names none, all it may
    /// still take (`None`: nothing is left, the effect is already there). Refused before a
    /// checkout, and when it asks for more than is left.
    pub fn after_sale(
        &self,
        after: AfterSale,
        asked: Option<Quantity>,
    ) -> Result<Option<Quantity>, RejectionCode> {
        if !self.status.is_sold() {
            return Err(RejectionCode::ReservationNotCheckedOut);
        }
        let left = self.left_to(after);
        match asked {
            None => Ok(Quantity::new(left).ok()),
            Some(asked) if asked.units() <= left => Ok(Some(asked)),
            Some(_) if after == AfterSale::Return => Err(RejectionCode::ExceedsShipped),
            Some(_) => Err(RejectionCode::ExceedsUnshipped),
        }
    }

    /// `holds` by item, in the order placed: a reservation's line is its holds on one item,
    /// one per location it is held at.
    pub fn by_item<'a>(
        holds: impl IntoIterator<Item = &'a HoldLine>,
    ) -> Vec<(&'a Sku, Vec<&'a HoldLine>)> {
        let mut items: Vec<(&Sku, Vec<&HoldLine>)> = Vec::new();
        for hold in holds {
            let item = hold.stream.item();
            match items.iter_mut().find(|(sku, _)| *sku == item) {
                Some((_, holds)) => holds.push(hold),
                None => items.push((item, vec![hold])),
            }
        }
        items
    }

    /// How `asked` units of an after-sale act on one item are shared by the reservation's holds
    /// on it (one per location it is held at, in the order they were placed): each takes what
    /// it has left before the next. The units each hold takes, by its place in `holds` (holds
    /// that take none left out), or the refusal one hold would get for asking more than they
    /// have left together.
    pub fn share(
        holds: &[&HoldLine],
        after: AfterSale,
        asked: Quantity,
    ) -> Result<Vec<(usize, Quantity)>, RejectionCode> {
        if !holds.iter().any(|hold| hold.status.is_sold()) {
            return Err(RejectionCode::ReservationNotCheckedOut);
        }
        let left: i64 = holds.iter().map(|hold| hold.left_to(after)).sum();
        if asked.units() > left {
            return Err(match after {
                AfterSale::Return => RejectionCode::ExceedsShipped,
                AfterSale::Fulfill | AfterSale::Cancel => RejectionCode::ExceedsUnshipped,
            });
        }
        let mut missing = asked.units();
        let mut shares = Vec::new();
        for (index, hold) in holds.iter().enumerate() {
            let take = hold.left_to(after).min(missing);
            if let Ok(units) = Quantity::new(take) {
                shares.push((index, units));
                missing -= take;
            }
        }
        Ok(shares)
    }

    /// Units `after` may still take on this line: for a shipment or a cancellation, what was
    /// sold and has neither shipped nor been cancelled; for a return, what shipped and has not
    /// come back. None before a checkout.
    pub fn left_to(&self, after: AfterSale) -> i64 {
        if !self.status.is_sold() {
            return 0;
        }
        match after {
            AfterSale::Fulfill | AfterSale::Cancel => {
                self.quantity.units() - self.fulfilled - self.cancelled
            }
            AfterSale::Return => self.fulfilled - self.returned,
        }
    }

    /// The status a reader sees at `now`: an active hold past its expiry is expired, even before
    /// an expiry event is written.
    pub fn status_at(&self, now: Timestamp) -> HoldStatus {
        match self.status {
            HoldStatus::Active if now > self.expires_at => HoldStatus::Expired,
            status => status,
        }
    }

    /// Whether the hold still counts against availability at `now`.
    pub fn counts_at(&self, now: Timestamp) -> bool {
        self.status == HoldStatus::Active && now < self.release_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ttl(secs: i64) -> TtlSeconds {
        TtlSeconds::new(secs).unwrap()
    }

    #[test]
    fn a_default_hold_counts_until_expiry_plus_grace_to_the_second() {
        let now = Timestamp::from_millis(1_000_500);
        let terms = HoldTerms::new(now, ttl(900), 120);
        assert_eq!(terms.expires_at, now.plus_seconds(900));
        assert_eq!(terms.release_at, Timestamp::from_millis(2_021_000));
    }

    #[test]
    fn an_extension_promises_ttl_from_now_but_never_past_a_day_from_the_placing() {
        let placed = Timestamp::from_millis(1_700_000_000_000);
        let early = placed.plus_seconds(600);
        let terms = HoldTerms::extended(placed, early, ttl(900), 120);
        assert_eq!(
            terms.expires_at,
            early.plus_seconds(900),
            "well within the day"
        );
        let late = placed.plus_seconds(23 * 3_600);
        let terms = HoldTerms::extended(placed, late, ttl(86_400), 120);
        assert_eq!(
            terms.expires_at,
            placed.plus_seconds(86_400),
            "capped at a day"
        );
        assert!(terms.release_at >= terms.expires_at.plus_seconds(120));
        let mut now = placed;
        for _ in 0..100 {
            now = HoldTerms::extended(placed, now, ttl(86_400), 120).expires_at;
        }
        assert_eq!(
            now,
            placed.plus_seconds(86_400),
            "extending again never goes further"
        );
    }

    #[test]
    fn a_long_hold_is_bucketed_to_the_minute_and_never_released_early() {
        let now = Timestamp::from_millis(1_000_500);
        let terms = HoldTerms::new(now, ttl(86_400), 120);
        let exact = terms.expires_at.plus_seconds(120);
        assert!(terms.release_at >= exact);
        assert!(terms.release_at.millis() - exact.millis() < 60_000);
        assert_eq!(terms.release_at.millis() % 60_000, 0);
    }

    #[test]
    fn a_reservation_is_active_while_any_line_is_then_committed_fulfilled_cancelled_released_or_expired(
    ) {
        use HoldStatus::{Active, Cancelled, Committed, Expired, Fulfilled, Released};
        let overall = |lines: &[HoldStatus]| HoldStatus::overall(lines.iter().copied());
        assert_eq!(overall(&[Expired, Committed, Active]), Active);
        assert_eq!(overall(&[Released, Expired, Committed]), Committed);
        assert_eq!(
            overall(&[Fulfilled, Committed]),
            Committed,
            "not all shipped"
        );
        assert_eq!(overall(&[Cancelled, Fulfilled, Expired]), Fulfilled);
        assert_eq!(overall(&[Released, Cancelled]), Cancelled);
        assert_eq!(overall(&[Expired, Released]), Released);
        assert_eq!(overall(&[Expired, Expired]), Expired);
    }

    #[test]
    fn an_after_sale_act_on_an_item_held_at_two_locations_takes_from_each_in_turn() {
        let id = ReservationId::placed(StreamId::parse("A:wh-1").unwrap(), 1);
        let hold = |stream: &str, units: i64, fulfilled: i64| HoldLine {
            reservation_id: id.clone(),
            stream: StreamId::parse(stream).unwrap(),
            quantity: Quantity::new(units).unwrap(),
            expires_at: Timestamp::from_millis(1_000),
            release_at: Timestamp::from_millis(2_000),
            status: HoldStatus::Committed,
            fulfilled,
            cancelled: 0,
            returned: 0,
        };
        let (first, second) = (hold("A:wh-1", 3, 1), hold("A:wh-2", 2, 0));
        let holds = [&first, &second];
        let units = |n| Quantity::new(n).unwrap();

        // wh-1 has 2 left to ship, wh-2 has 2.
        let share = HoldLine::share(&holds, AfterSale::Fulfill, units(3));
        assert_eq!(share, Ok(vec![(0, units(2)), (1, units(1))]));
        assert_eq!(
            HoldLine::share(&holds, AfterSale::Fulfill, units(1)),
            Ok(vec![(0, units(1))])
        );
        assert_eq!(
            HoldLine::share(&holds, AfterSale::Fulfill, units(5)),
            Err(RejectionCode::ExceedsUnshipped)
        );
        // Only wh-1 shipped a unit: one comes back there, two are more than shipped.
        assert_eq!(
            HoldLine::share(&holds, AfterSale::Return, units(1)),
            Ok(vec![(0, units(1))])
        );
        assert_eq!(
            HoldLine::share(&holds, AfterSale::Return, units(2)),
            Err(RejectionCode::ExceedsShipped)
        );
        let active = HoldLine {
            status: HoldStatus::Active,
            ..first.clone()
        };
        assert_eq!(
            HoldLine::share(&[&active], AfterSale::Cancel, units(1)),
            Err(RejectionCode::ReservationNotCheckedOut)
        );
    }
}
