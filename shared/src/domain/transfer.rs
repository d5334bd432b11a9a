//! Transfers of an item's stock between two of the shop's locations: units leave one location's
//! stock into transit (`transit_out` there, `transit_in` at the other), for sale at neither,
//! and land at the other when received, in one receipt or several.
//!
//! Both ends are streams of the same item, so a transfer and its receipts are queued under the
//! item and decided in one transaction over both locations: one event at each end.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use super::stream::LocationId;
use super::types::{truncate, CommandId, InvalidValue, Sku};

/// A transfer: the item, the location its units leave, the one they land at, and a nonce.
/// Text form `{sku}~{from}~{to}~{nonce as 16 hex digits}` (`~` is outside every part): the id
/// says which item and locations keep it, so a receipt is queued under the item and decided
/// without a lookup, as a reservation id says where its anchor is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId {
    sku: Sku,
    from: LocationId,
    to: LocationId,
    nonce: u64,
}

impl TransferId {
    /// The transfer of `sku` from `from` to `to` that the command `command_id` makes (a
    /// retried request names the same command, so the same transfer). Two different locations
    /// only: `invalid_transfer` otherwise.
    pub fn new(
        sku: Sku,
        from: LocationId,
        to: LocationId,
        command_id: CommandId,
    ) -> Result<Self, InvalidValue> {
        if from == to {
            return Err(InvalidValue::new(
                "invalid_transfer",
                format!("a transfer goes between two locations; from and to are both {from}"),
            ));
        }
        Ok(Self {
            sku,
            from,
            to,
            nonce: command_id.nonce(),
        })
    }

    /// The item transferred.
    pub fn sku(&self) -> &Sku {
        &self.sku
    }

    /// Where its units leave.
    pub fn from(&self) -> &LocationId {
        &self.from
    }

    /// Where they land.
    pub fn to(&self) -> &LocationId {
        &self.to
    }

    /// Parses the text form; anything else is `invalid_transfer_id`.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let invalid = || {
            InvalidValue::new(
                "invalid_transfer_id",
                format!("{:?} is not a transfer id", truncate(raw, 120)),
            )
        };
        let mut parts = raw.split('~');
        let (Some(sku), Some(from), Some(to), Some(nonce), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(invalid());
        };
        let sku = Sku::parse(sku).map_err(|_| invalid())?;
        let from = LocationId::parse(from).map_err(|_| invalid())?;
        let to = LocationId::parse(to).map_err(|_| invalid())?;
        if from == to || nonce.len() != 16 || !nonce.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        let nonce = u64::from_str_radix(nonce, 16).map_err(|_| invalid())?;
        Ok(Self {
            sku,
            from,
            to,
            nonce,
        })
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}~{}~{}~{:016x}",
            self.sku, self.from, self.to, self.nonce
        )
    }
}

impl FromStr for TransferId {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for TransferId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TransferId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_id_names_its_item_and_both_ends_and_reads_back_as_written() {
        let command = CommandId::random();
        let id = TransferId::new(
            Sku::parse("LAMP-1").unwrap(),
            LocationId::default(),
            LocationId::parse("store-5").unwrap(),
            command,
        )
        .unwrap();
        let text = id.to_string();
        assert!(text.starts_with("LAMP-1~default~store-5~"), "{text}");
        assert_eq!(TransferId::parse(&text), Ok(id.clone()));
        assert_eq!(
            serde_json::from_str::<TransferId>(&serde_json::to_string(&id).unwrap()).unwrap(),
            id
        );
        // The same command names the same transfer.
        let again = TransferId::new(
            Sku::parse("LAMP-1").unwrap(),
            LocationId::default(),
            LocationId::parse("store-5").unwrap(),
            command,
        );
        assert_eq!(again, Ok(id));
        for bad in [
            "",
            "LAMP-1~default~store-5",
            "LAMP-1~default~default~0000000000000001",
            "LAMP-1~default~store-5~01",
            "LAMP-1~default~store-5~000000000000000g",
            "LAMP 1~default~store-5~0000000000000001",
            "LAMP-1~default~store-5~0000000000000001~x",
        ] {
            assert_eq!(
                TransferId::parse(bad).map_err(|e| e.code),
                Err("invalid_transfer_id"),
                "{bad:?}"
            );
        }
        let same = TransferId::new(
            Sku::parse("LAMP-1").unwrap(),
            LocationId::default(),
            LocationId::default(),
            command,
        );
        assert_eq!(same.map_err(|e| e.code), Err("invalid_transfer"));
    }
}
