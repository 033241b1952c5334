//! The one rule that says what a side of a request was, for the cartography
//! of transfers outside the EEA (SPEC §1, §7, §11): the live `/transfers`
//! ([`crate::cartography`]) and the `transfers` report
//! ([`crate::audit::transfers`]) both call [`classify`], and nothing else
//! decides what they count.
//!
//! A side (client or upstream) is
//!
//! - [`Flow::Inside`]: located in the EEA and not operated from outside it
//!   (unknown operator counts as inside): not in the cartography;
//! - [`Flow::Internal`]: admitted by a network rule (`allow_networks`): the
//!   host's own networks, whatever their country says, never a transfer;
//! - [`Flow::Refused`]: the request was blocked (on either side) or refused
//!   before the policy judged it: nothing was exchanged with the storage, an
//!   *attempt refused*, never a transfer;
//! - [`Flow::Transfer`]: the request was forwarded and this side is outside
//!   the EEA by location (unknown country included) or, inside it, by
//!   operator: allowed by a grant, allowed by the policy (an override such
//!   as `allow_countries = ["EEA", "CH"]`, `unknown_country = "allow"`, or
//!   `on_foreign_operator = "ignore"`), or flagged (monitor mode, or
//!   `on_foreign_operator = "flag"`).
//!
//! The area is the EEA, not the configured one: the cartography says where
//! data went, whatever the policy allowed.

use crate::geo::{Country, CountrySet};
use crate::policy::{Decision, Rule, Side};

/// What one side of one request is known to be, from the live evidence or
/// from its audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideFacts {
    /// Where the address is; `None` when unknown (or not a valid code).
    pub location: Option<Country>,
    /// The operator's country, when an operator database knew it.
    pub operator: Option<Country>,
    /// The rule that decided this side; `None` in records written before
    /// the rule was recorded.
    pub rule: Option<Rule>,
    /// This side's own decision.
    pub decision: Decision,
}

/// What happened to the request as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Forwarded to the storage (allowed or flagged); `grant` when a grant
    /// admitted the client.
    Forwarded {
        /// A grant admitted the client side.
        grant: bool,
    },
    /// Blocked by the policy on one side: nothing was forwarded.
    Blocked,
    /// Refused before the policy judged it: nothing was forwarded.
    Refused,
}

/// Why a side outside the area is in the cartography.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Its location is outside the EEA, or unknown.
    Location,
    /// Located inside the EEA, operated from outside it.
    Operator,
}

/// On what ground data was exchanged with a side outside the area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ground {
    /// Allowed by the policy: an override of the EEA default.
    Override,
    /// Allowed by a signed grant (client side only).
    Grant,
    /// Passed with a flag (monitor mode, or a foreign operator flagged).
    Flagged,
}

impl Ground {
    /// Its column in a row's counts: override, grant, flagged.
    pub const fn index(self) -> usize {
        match self {
            Self::Override => 0,
            Self::Grant => 1,
            Self::Flagged => 2,
        }
    }
}

/// Why an attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Blocked by the policy.
    Blocked,
    /// Refused before the policy judged it.
    Refused,
}

impl Refusal {
    /// Its column in a row's counts: blocked, refused.
    pub const fn index(self) -> usize {
        match self {
            Self::Blocked => 0,
            Self::Refused => 1,
        }
    }
}

/// What a side was, for the cartography (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Inside the area by location and operator.
    Inside,
    /// Admitted by a network rule: the host's own networks.
    Internal,
    /// Data exchanged with a side outside the area.
    Transfer(Basis, Ground),
    /// An attempt refused, with a side outside the area.
    Refused(Basis, Refusal),
}

/// The one rule: what `side` of a request whose fate is `fate` was,
/// against the EEA `area`.
pub fn classify(area: &CountrySet, side: Side, facts: &SideFacts, fate: Fate) -> Flow {
    let outside = |c: Option<Country>| c.is_none_or(|c| !area.contains(c));
    let basis = if outside(facts.location) {
        Basis::Location
    } else if facts.operator.is_some() && outside(facts.operator) {
        Basis::Operator
    } else {
        return Flow::Inside;
    };
    // A network rule is the operator's statement that the address is its
    // own: checked before anything else, as the policy does (SPEC §4).
    if facts.rule == Some(Rule::AllowNetworks) {
        return Flow::Internal;
    }
    match fate {
        Fate::Refused => Flow::Refused(basis, Refusal::Refused),
        Fate::Blocked => Flow::Refused(basis, Refusal::Blocked),
        Fate::Forwarded { grant } => Flow::Transfer(
            basis,
            match facts.decision {
                Decision::Flagged => Ground::Flagged,
                // A forwarded request has no blocked side; were a record to
                // say so, it is not reported as allowed.
                Decision::Blocked => Ground::Flagged,
                Decision::Allowed if grant && side == Side::Client => Ground::Grant,
                Decision::Allowed => Ground::Override,
            },
        ),
    }
}

/// The rule recorded for the client of a request refused before the
/// policy judged it: `allow_networks` when that network rule (and no
/// `deny_networks`) covers the address, so the host's own clients (a
/// health check with the wrong `Host`) are internal, not attempts from
/// abroad; else none. `policy` is the route's, or the global one before a
/// route was chosen.
pub fn refused_rule(policy: &crate::policy::Policy, ip: Option<std::net::IpAddr>) -> Option<Rule> {
    let ip = ip?;
    (!policy.deny_networks.contains(ip) && policy.allow_networks.contains(ip))
        .then_some(Rule::AllowNetworks)
}

/// The wire name of `rule` in the audit record (`client_rule`,
/// `upstream_rule`). Public contract.
pub const fn rule_key(rule: Rule) -> &'static str {
    match rule {
        Rule::DenyNetworks => "deny_networks",
        Rule::AllowNetworks => "allow_networks",
        Rule::Untraceable => "untraceable_address",
        Rule::DenyCountries => "deny_countries",
        Rule::AllowCountries => "allow_countries",
        Rule::UnknownCountry => "unknown_country",
        Rule::NotInAllowCountries => "not_in_allow_countries",
        Rule::ForeignOperator => "foreign_operator",
    }
}

/// The rule named `key` by [`rule_key`].
pub fn rule_from_key(key: &str) -> Option<Rule> {
    [
        Rule::DenyNetworks,
        Rule::AllowNetworks,
        Rule::Untraceable,
        Rule::DenyCountries,
        Rule::AllowCountries,
        Rule::UnknownCountry,
        Rule::NotInAllowCountries,
        Rule::ForeignOperator,
    ]
    .into_iter()
    .find(|r| rule_key(*r) == key)
}

#[cfg(test)]
mod tests;
