//! Who may act: the three scopes a token can carry, the client a token was issued to, and the
//! two rules every use case and the template follow: admin may do whatever the other scopes
//! allow, and a reservation (or a command) belongs to the client that made it.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::types::InvalidValue;

/// What a token allows, one scope per kind of caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `inventory/read`: read items and the read view (product pages).
    Read,
    /// `inventory/reserve`: a storefront backend: its reservations and the commands it issued.
    Reserve,
    /// `inventory/admin`: warehouses and admins: receipts, adjustments, and anything else.
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Reserve, Scope::Admin];

    /// The scope's name in tokens (the OAuth 2.0 `scope` claim).
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "inventory/read",
            Scope::Reserve => "inventory/reserve",
            Scope::Admin => "inventory/admin",
        }
    }

    /// The scope named `name`, if it is one of ours (tokens may carry others: they are ignored).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.name() == name)
    }

    /// The scopes any one of which grants this one: itself, and admin. The API Gateway routes
    /// list exactly these as their `AuthorizationScopes` (a template test holds them to it).
    pub fn granted_by(self) -> Vec<Scope> {
        let mut scopes = vec![self];
        if self != Scope::Admin {
            scopes.push(Scope::Admin);
        }
        scopes
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::from_name(&raw).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
            serde::de::Error::custom(format!(
                "unknown scope {raw:?}; expected one of {}",
                names.join(", ")
            ))
        })
    }
}

/// The client a token was issued to (OAuth 2.0 `client_id`): 1–128 visible ASCII characters
/// without `#`, the separator of the keys it is part of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    /// Longest client id accepted.
    pub const MAX_LEN: usize = 128;

    /// Parses a client id.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let valid = |b: u8| b.is_ascii_graphic() && b != b'#';
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !raw.bytes().all(valid) {
            return Err(InvalidValue::new(
                "invalid_client_id",
                format!(
                    "a client id must be 1-{} visible ASCII characters other than '#'",
                    Self::MAX_LEN
                ),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// An authenticated caller: the client and the scopes its token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    client_id: ClientId,
    scopes: BTreeSet<Scope>,
}

impl Caller {
    /// A caller with these scopes.
    pub fn new(client_id: ClientId, scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self {
            client_id,
            scopes: scopes.into_iter().collect(),
        }
    }

    /// The caller of a service that runs open, without authentication (`inventory dev` without
    /// tokens): client `local`, every scope.
    pub fn local_admin() -> Self {
        Self::new(ClientId("local".to_owned()), Scope::ALL)
    }

    /// The client.
    pub fn client_id(&self) -> &ClientId {
        &self.client_id
    }

    /// Whether the token allows what `scope` allows (admin allows everything).
    pub fn may(&self, scope: Scope) -> bool {
        scope
            .granted_by()
            .iter()
            .any(|granting| self.scopes.contains(granting))
    }

    /// Whether this caller may see and act on what `owner` made: its own, or anything for admin.
    /// Things made before ownership was recorded (`None`) are admin's only.
    pub fn may_act_for(&self, owner: Option<&ClientId>) -> bool {
        self.scopes.contains(&Scope::Admin) || owner == Some(&self.client_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(client: &str, scopes: &[Scope]) -> Caller {
        Caller::new(ClientId::parse(client).unwrap(), scopes.iter().copied())
    }

    #[test]
    fn admin_may_do_what_every_scope_allows_and_the_others_only_their_own() {
        let admin = caller("w", &[Scope::Admin]);
        assert!(Scope::ALL.iter().all(|scope| admin.may(*scope)));
        let storefront = caller("s", &[Scope::Reserve]);
        assert!(storefront.may(Scope::Reserve));
        assert!(!storefront.may(Scope::Read));
        assert!(!storefront.may(Scope::Admin));
        let page = caller("p", &[Scope::Read]);
        assert!(page.may(Scope::Read));
        assert!(!page.may(Scope::Reserve));
    }

    #[test]
    fn a_client_may_act_for_itself_admin_for_anyone_and_nobody_else_for_an_unowned_thing() {
        let owner = ClientId::parse("store-a").unwrap();
        let other = ClientId::parse("store-b").unwrap();
        assert!(caller("store-a", &[Scope::Reserve]).may_act_for(Some(&owner)));
        assert!(!caller("store-b", &[Scope::Reserve]).may_act_for(Some(&owner)));
        assert!(caller("warehouse", &[Scope::Admin]).may_act_for(Some(&other)));
        assert!(caller("warehouse", &[Scope::Admin]).may_act_for(None));
        assert!(!caller("store-a", &[Scope::Reserve]).may_act_for(None));
    }

    #[test]
    fn scopes_are_named_as_in_tokens_and_unknown_names_are_not_ours() {
        for scope in Scope::ALL {
            assert_eq!(Scope::from_name(scope.name()), Some(scope));
        }
        assert_eq!(Scope::from_name("inventory/write"), None);
        assert_eq!(Scope::from_name("openid"), None);
        assert_eq!(
            Scope::Read.granted_by(),
            vec![Scope::Read, Scope::Admin],
            "the routes' AuthorizationScopes"
        );
        assert_eq!(Scope::Admin.granted_by(), vec![Scope::Admin]);
    }

    #[test]
    fn a_client_id_with_a_separator_or_invisible_characters_is_rejected() {
        for raw in ["", "a#b", "a b", "é", &"x".repeat(129)] {
            assert_eq!(
                ClientId::parse(raw).map_err(|e| e.code),
                Err("invalid_client_id"),
                "{raw:?}"
            );
        }
        assert!(ClientId::parse("4b2kq8f1example@clients").is_ok());
    }
}
