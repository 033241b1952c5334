//! Values the config names and other modules act on, kept here so that
//! the config depends on none of them: how much of an object key the audit
//! trail keeps, and which names a signed checkpoint note can carry.

/// `audit.object_key`: how much of the object key the trail keeps (keys may
/// hold patient identifiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKeyMode {
    /// `bucket/key` as received.
    #[default]
    Full,
    /// Lower-case hex SHA-256 of what `Full` would record. Unkeyed: it
    /// links records of one object without showing its key, but a guessable
    /// key (a patient number) can be found by hashing candidates.
    Sha256,
    /// Nothing.
    None,
}

impl ObjectKeyMode {
    /// Public contract: the config value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Sha256 => "sha256",
            Self::None => "none",
        }
    }
}

/// A name a signed note can carry (key name or origin): non-empty, no
/// whitespace, no control character, no `+`.
pub fn valid_note_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}
