//! The states of on-hand stock: for sale, or set aside in one of the states that are not
//! (`damaged`, `quality_control`, `safety_stock`), and why units changed state or count.
//!
//! `available = on_hand − committed − held − Σ unavailable`: units set aside stay on hand (they
//! are in the building and a count finds them) but no buyer is promised them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::types::InvalidValue;
use crate::limits::MAX_NOTE_LEN;

/// Where on-hand units stand, as a move between states names it: for sale (`available`) or in
/// one of the states that are not for sale.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockState {
    /// For sale: what holds and checkouts take from.
    Available,
    /// Damaged: kept until repaired, returned to the supplier or written off.
    Damaged,
    /// Waiting for inspection (a return, a suspect delivery).
    QualityControl,
    /// Kept back on purpose so that the item never sells its last units (a display, a buffer).
    SafetyStock,
}

impl StockState {
    /// Every state, `available` first.
    pub const ALL: [StockState; 4] = [
        StockState::Available,
        StockState::Damaged,
        StockState::QualityControl,
        StockState::SafetyStock,
    ];

    /// The snake_case name clients use.
    pub fn as_str(self) -> &'static str {
        match self {
            StockState::Available => "available",
            StockState::Damaged => "damaged",
            StockState::QualityControl => "quality_control",
            StockState::SafetyStock => "safety_stock",
        }
    }
}

impl fmt::Display for StockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// On-hand units not for sale, per state. Zero everywhere for an item that never set any aside
/// (and for every snapshot written before the states existed).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unavailable {
    /// Damaged units.
    #[serde(default)]
    pub damaged: i64,
    /// Units waiting for inspection.
    #[serde(default)]
    pub quality_control: i64,
    /// Units kept back on purpose.
    #[serde(default)]
    pub safety_stock: i64,
}

impl Unavailable {
    /// Whether no unit is set aside (what a snapshot leaves out).
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// Units set aside in every state together.
    pub fn total(&self) -> i64 {
        self.damaged + self.quality_control + self.safety_stock
    }

    /// Units in `state`; `None` for `available`, which is no state of this kind.
    pub fn units(&self, state: StockState) -> Option<i64> {
        match state {
            StockState::Available => None,
            StockState::Damaged => Some(self.damaged),
            StockState::QualityControl => Some(self.quality_control),
            StockState::SafetyStock => Some(self.safety_stock),
        }
    }

    /// Adds `units` (negative: takes them) to `state`; nothing for `available`, which is what is
    /// left of on-hand stock, not a count of its own.
    pub fn add(&mut self, state: StockState, units: i64) {
        match state {
            StockState::Available => {}
            StockState::Damaged => self.damaged += units,
            StockState::QualityControl => self.quality_control += units,
            StockState::SafetyStock => self.safety_stock += units,
        }
    }

    /// Each state's figure summed with `other`'s (an item over its buckets).
    pub fn plus(self, other: Unavailable) -> Unavailable {
        Unavailable {
            damaged: self.damaged + other.damaged,
            quality_control: self.quality_control + other.quality_control,
            safety_stock: self.safety_stock + other.safety_stock,
        }
    }
}

/// A move of units from one state to another. Never from a state to itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawReclassification")]
pub struct Reclassification {
    /// The state the units leave.
    pub from: StockState,
    /// The state they enter.
    pub to: StockState,
}

impl Reclassification {
    /// The move from `from` to `to`; `None` when the two are the same state.
    pub fn new(from: StockState, to: StockState) -> Option<Self> {
        (from != to).then_some(Self { from, to })
    }
}

#[derive(Deserialize)]
struct RawReclassification {
    from: StockState,
    to: StockState,
}

impl TryFrom<RawReclassification> for Reclassification {
    type Error = String;

    fn try_from(raw: RawReclassification) -> Result<Self, Self::Error> {
        Reclassification::new(raw.from, raw.to)
            .ok_or_else(|| format!("a move from {} to itself", raw.from))
    }
}

/// Why a change was made, as the ledger shows it: a reason from the list, and what people add.
///
/// Read leniently, as records written before reasons were listed need: no reason is
/// `received` (a receipt's), and a reason that is not on the list (an adjustment's free text)
/// is `other` with the text as its note ([`Annotation::from_text`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawAnnotation")]
pub struct Annotation {
    /// Why.
    pub reason: Reason,
    /// Free text, for the people reading the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The document behind it (a purchase order, an order, a count sheet, a transfer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(Deserialize)]
struct RawAnnotation {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    reference: Option<String>,
}

impl From<RawAnnotation> for Annotation {
    fn from(raw: RawAnnotation) -> Self {
        let mut why = match raw.reason {
            None => Annotation::because(Reason::Received),
            Some(text) => Annotation::from_text(text),
        };
        why.note = match (why.note, raw.note) {
            (Some(text), Some(note)) => Some(format!("{text}: {note}")),
            (text, note) => text.or(note),
        };
        why.reference = raw.reference;
        why
    }
}

impl Annotation {
    /// A reason given as text: the listed reason it names, or `other` with the text as the
    /// note (how an adjustment's free-text reason is kept).
    pub fn from_text(text: String) -> Self {
        match Reason::parse(&text) {
            Some(reason) => Self::because(reason),
            None => Self {
                reason: Reason::Other,
                note: Some(text),
                reference: None,
            },
        }
    }

    /// An adjustment's reason as a request gives it: a listed reason's code, or free text, kept
    /// as `other` with the text as the note (so requests from before reasons were listed keep
    /// working). Free text with a note of its own is refused (`invalid_reason`): the request
    /// must then name a listed reason.
    pub fn given(
        reason: String,
        note: Option<String>,
        reference: Option<String>,
    ) -> Result<Self, InvalidValue> {
        let why = Self::from_text(reason);
        let free_text = why.note.is_some();
        if free_text && note.is_some() {
            let codes: Vec<&str> = Reason::ALL.iter().map(|reason| reason.as_str()).collect();
            return Err(InvalidValue::new(
                "invalid_reason",
                format!(
                    "with a note, the reason must be one of {}; free text alone is kept as the \
                     note of `other`",
                    codes.join(", ")
                ),
            ));
        }
        if let Some(text) = why.note.as_deref().filter(|_| free_text) {
            if text.trim().is_empty() || text.chars().count() > MAX_NOTE_LEN {
                return Err(InvalidValue::new(
                    "invalid_reason",
                    format!("reason must be a listed reason or 1-{MAX_NOTE_LEN} characters of text, not blank"),
                ));
            }
        }
        Ok(Self {
            note: why.note.or(note),
            reference,
            ..why
        })
    }

    /// A receipt's: `received`, under `reference` (the delivery note, the purchase order).
    pub fn received(reference: Option<String>) -> Self {
        Self {
            reference,
            ..Self::because(Reason::Received)
        }
    }

    /// `reason` alone, with no note and no reference.
    pub fn because(reason: Reason) -> Self {
        Self {
            reason,
            note: None,
            reference: None,
        }
    }
}

/// Why stock changed, from a documented list (what finance and a 3PL reconcile by).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Units arrived (a receipt's reason unless it says otherwise).
    Received,
    /// A correction of an earlier mistake.
    Correction,
    /// A count of the shelf.
    CycleCount,
    /// Units found damaged.
    Damaged,
    /// Units sent to, or back from, inspection.
    QualityControl,
    /// Units kept back on purpose, or released from that.
    SafetyStock,
    /// Units lost or stolen.
    Shrinkage,
    /// Units a customer sent back.
    Returned,
    /// Units made sellable again (repaired, inspected).
    Restock,
    /// Anything else (say what in the note).
    Other,
}

impl Reason {
    /// Every reason, in the documented order.
    pub const ALL: [Reason; 10] = [
        Reason::Received,
        Reason::Correction,
        Reason::CycleCount,
        Reason::Damaged,
        Reason::QualityControl,
        Reason::SafetyStock,
        Reason::Shrinkage,
        Reason::Returned,
        Reason::Restock,
        Reason::Other,
    ];

    /// The reason whose code is `code`.
    pub fn parse(code: &str) -> Option<Reason> {
        Reason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == code)
    }

    /// The snake_case code clients use.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Received => "received",
            Reason::Correction => "correction",
            Reason::CycleCount => "cycle_count",
            Reason::Damaged => "damaged",
            Reason::QualityControl => "quality_control",
            Reason::SafetyStock => "safety_stock",
            Reason::Shrinkage => "shrinkage",
            Reason::Returned => "returned",
            Reason::Restock => "restock",
            Reason::Other => "other",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reason {
    type Err = ();

    /// The reason named by its code, exactly; anything else is not one (an adjustment's free
    /// text from before the list is kept as its note, under `other`).
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == code)
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Change, Command, Event};

    #[test]
    fn receipts_and_adjustments_written_before_reasons_read_as_received_and_other_with_their_text()
    {
        let legacy = [
            r#"{"sku":"A","seq":1,"at":1,"type":"stock_received","command_id":"00000000-0000-0000-0000-000000000001","quantity":3,"reference":"PO-7"}"#,
            r#"{"sku":"A","seq":2,"at":2,"type":"stock_adjusted","command_id":"00000000-0000-0000-0000-000000000002","delta":-1,"reason":"count"}"#,
            r#"{"sku":"A","seq":3,"at":3,"type":"stock_adjusted","command_id":"00000000-0000-0000-0000-000000000003","delta":-1,"reason":"shrinkage"}"#,
        ];
        let whys: Vec<Annotation> = legacy
            .iter()
            .map(
                |json| match serde_json::from_str::<Event>(json).unwrap().change {
                    Change::StockReceived { why, .. } | Change::StockAdjusted { why, .. } => why,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert_eq!(
            whys,
            vec![
                Annotation::received(Some("PO-7".into())),
                Annotation {
                    reason: Reason::Other,
                    note: Some("count".into()),
                    reference: None
                },
                Annotation::because(Reason::Shrinkage),
            ]
        );
        let queued = r#"{"id":"00000000-0000-0000-0000-000000000004","sku":"A","accepted_at":0,"type":"adjust_stock","delta":2,"reason":"found behind the shelf"}"#;
        let command: Command = serde_json::from_str(queued).unwrap();
        let json = serde_json::to_string(&command).unwrap();
        assert!(
            json.contains(r#""reason":"other","note":"found behind the shelf""#),
            "{json}"
        );
    }

    #[test]
    fn an_adjustment_reason_is_a_listed_one_or_free_text_alone() {
        let given = |reason: &str, note: Option<&str>| {
            Annotation::given(reason.into(), note.map(Into::into), None)
        };
        assert_eq!(
            given("damaged", Some("forklift")).unwrap(),
            Annotation {
                reason: Reason::Damaged,
                note: Some("forklift".into()),
                reference: None
            }
        );
        assert_eq!(given("count", None).unwrap().note.as_deref(), Some("count"));
        for (reason, note) in [("count", Some("aisle 4")), ("  ", None)] {
            assert_eq!(given(reason, note).unwrap_err().code, "invalid_reason");
        }
    }

    #[test]
    fn a_state_and_a_reason_read_back_from_their_codes() {
        for state in StockState::ALL {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
            assert_eq!(serde_json::from_str::<StockState>(&json).unwrap(), state);
        }
        for reason in Reason::ALL {
            assert_eq!(reason.as_str().parse::<Reason>(), Ok(reason));
            assert_eq!(
                serde_json::to_string(&reason).unwrap(),
                format!("\"{reason}\"")
            );
        }
        assert_eq!("Damaged".parse::<Reason>(), Err(()));
    }

    #[test]
    fn a_move_from_a_state_to_itself_is_no_move() {
        assert!(Reclassification::new(StockState::Damaged, StockState::Damaged).is_none());
        let err = serde_json::from_str::<Reclassification>(r#"{"from":"damaged","to":"damaged"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("damaged to itself"), "{err}");
        let ok: Reclassification =
            serde_json::from_str(r#"{"from":"available","to":"damaged"}"#).unwrap();
        assert_eq!(
            (ok.from, ok.to),
            (StockState::Available, StockState::Damaged)
        );
    }

    #[test]
    fn unavailable_units_add_up_per_state_and_available_is_none_of_them() {
        let mut set_aside = Unavailable::default();
        assert!(set_aside.is_zero());
        set_aside.add(StockState::Damaged, 3);
        set_aside.add(StockState::SafetyStock, 2);
        set_aside.add(StockState::Available, 100);
        set_aside.add(StockState::Damaged, -1);
        assert_eq!(set_aside.units(StockState::Damaged), Some(2));
        assert_eq!(set_aside.units(StockState::Available), None);
        assert_eq!(set_aside.total(), 4);
        assert_eq!(set_aside.plus(set_aside).total(), 8);
        let old: Unavailable = serde_json::from_str("{}").unwrap();
        assert!(old.is_zero());
    }
}
