//! The compiled residency policy and the verdict it gives for one address.
//!
//! `Policy::judge` is the hot path: it canonicalises the address, checks the
//! network tables, looks the country up and tests two bitsets. It neither
//! locks nor allocates (`tests/alloc.rs` proves it). Blocking is an outcome,
//! not an error: `judge` returns a [`Verdict`].

mod networks;

use std::net::IpAddr;

pub use networks::NetworkTable;

use crate::geo::{
    Canonical, Country, CountrySet, GeoDb, Nat64Prefixes, Operator, OperatorDb, canonicalize,
};

/// `enforce` blocks; `monitor` lets the request pass and flags it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Requests that fail the policy are refused.
    Enforce,
    /// Requests that fail the policy pass, flagged, counted and traced.
    Monitor,
}

impl Mode {
    /// Public contract: the config value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Monitor => "monitor",
        }
    }
}

/// Which end of the flow an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client that sent the request.
    Client,
    /// The storage the request is forwarded to.
    Upstream,
}

impl Side {
    /// Public contract: used verbatim in the header, metric labels and audit.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Upstream => "upstream",
        }
    }
}

/// Why an address fails the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The country is not in `allow_countries`.
    CountryNotAllowed,
    /// The country is in `deny_countries`.
    CountryDenied,
    /// The address is in `deny_networks`.
    NetworkDenied,
    /// The database has no country for the address and `unknown_country = "deny"`.
    UnknownCountry,
    /// The address hides the real one (Teredo) or could not be established
    /// (a malformed forwarding header from a trusted proxy).
    UntraceableAddress,
    /// No resolved IP of the upstream passes the policy.
    NoAllowedUpstreamIp,
    /// Inside the area by location, but the network announcing the address
    /// is registered outside `operator_countries` (SPEC §11).
    ForeignOperator,
}

impl Reason {
    /// Public contract: used verbatim in the header, metric labels and audit.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CountryNotAllowed => "country_not_allowed",
            Self::CountryDenied => "country_denied",
            Self::NetworkDenied => "network_denied",
            Self::UnknownCountry => "unknown_country",
            Self::UntraceableAddress => "untraceable_address",
            Self::NoAllowedUpstreamIp => "no_allowed_upstream_ip",
            Self::ForeignOperator => "foreign_operator",
        }
    }

    /// Every reason, for pre-resolving metric handles.
    pub const ALL: [Reason; 7] = [
        Self::CountryNotAllowed,
        Self::CountryDenied,
        Self::NetworkDenied,
        Self::UnknownCountry,
        Self::UntraceableAddress,
        Self::NoAllowedUpstreamIp,
        Self::ForeignOperator,
    ];
}

/// What happens to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Passes the policy.
    Allowed,
    /// Fails the policy in enforce mode: refused.
    Blocked,
    /// Fails the policy in monitor mode: passes, flagged.
    Flagged,
}

impl Decision {
    /// Public contract: used verbatim in metric labels and audit.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Blocked => "blocked",
            Self::Flagged => "flagged",
        }
    }
}

/// The rule that decided a verdict, for `lookup`, `check` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `deny_networks` matched.
    DenyNetworks,
    /// `allow_networks` matched.
    AllowNetworks,
    /// Teredo, a malformed NAT64 address, or otherwise untraceable.
    Untraceable,
    /// `deny_countries` matched.
    DenyCountries,
    /// `allow_countries` matched.
    AllowCountries,
    /// No country known; `unknown_country` decided.
    UnknownCountry,
    /// A country outside `allow_countries`.
    NotInAllowCountries,
    /// The country passed; the operator is outside `operator_countries`.
    ForeignOperator,
}

impl Rule {
    /// The config key (or condition) the rule comes from.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DenyNetworks => "deny_networks",
            Self::AllowNetworks => "allow_networks",
            Self::Untraceable => "untraceable_address",
            Self::DenyCountries => "deny_countries",
            Self::AllowCountries => "allow_countries",
            Self::UnknownCountry => "unknown_country",
            Self::NotInAllowCountries => "allow_countries (not listed)",
            Self::ForeignOperator => "operator_countries (not listed)",
        }
    }
}

/// The policy's answer for one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The address as judged (after unwrapping IPv4 from IPv6 forms).
    pub ip: Option<IpAddr>,
    /// Its country, if the database knows it.
    pub country: Option<Country>,
    /// The rule that decided.
    pub rule: Rule,
    /// `None` when the address passes; the reason when it fails.
    pub reason: Option<Reason>,
    /// Who operates it, when an operator database is configured.
    pub operator: Operator,
    /// The operator's country is known and outside `operator_countries`.
    pub foreign_operator: bool,
    /// The failure only flags, whatever the mode (`on_foreign_operator =
    /// "flag"`): the request is served and the address may be dialled.
    pub advisory: bool,
}

impl Verdict {
    /// True when the address passes the policy.
    #[inline]
    pub const fn passes(&self) -> bool {
        self.reason.is_none()
    }

    /// The verdict for an address that cannot be established at all.
    pub const fn untraceable() -> Self {
        Self {
            ip: None,
            country: None,
            rule: Rule::Untraceable,
            reason: Some(Reason::UntraceableAddress),
            operator: Operator {
                country: None,
                asn: None,
            },
            foreign_operator: false,
            advisory: false,
        }
    }
}

/// One compiled policy: the global one, or a route's with its overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Enforce or monitor.
    pub mode: Mode,
    /// Countries whose addresses pass.
    pub allow_countries: CountrySet,
    /// Countries whose addresses fail, whatever else says.
    pub deny_countries: CountrySet,
    /// Whether an address with no country passes.
    pub unknown_allowed: bool,
    /// Networks that always pass (after `deny_networks`).
    pub allow_networks: NetworkTable,
    /// Networks that always fail.
    pub deny_networks: NetworkTable,
    /// `[geoip] nat64_prefixes`: where NAT64 addresses embed IPv4 ones.
    pub nat64: Nat64Prefixes,
    /// Operator countries that raise no `foreign_operator`.
    pub operator_countries: CountrySet,
    /// What a foreign operator does, per side.
    pub on_foreign_operator: OperatorActions,
}

/// `on_foreign_operator`: what an address whose operator is outside
/// `operator_countries` does, once its country passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OperatorAction {
    /// Nothing: the operator is looked up for evidence only.
    #[default]
    Ignore,
    /// Served (and dialled), flagged with `foreign_operator`, whatever the mode.
    Flag,
    /// Refused like any other reason (flagged instead in monitor mode).
    Block,
}

impl OperatorAction {
    /// Public contract: the config value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ignore => "ignore",
            Self::Flag => "flag",
            Self::Block => "block",
        }
    }
}

/// `on_foreign_operator` for each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OperatorActions {
    /// For the client address.
    pub client: OperatorAction,
    /// For each resolved upstream address.
    pub upstream: OperatorAction,
}

impl OperatorActions {
    /// The action for `side`.
    #[inline]
    pub const fn get(self, side: Side) -> OperatorAction {
        match side {
            Side::Client => self.client,
            Side::Upstream => self.upstream,
        }
    }
}

impl Policy {
    /// Judges `ip` in the SPEC §4 order: `deny_networks` → `allow_networks`
    /// → untraceable (Teredo, a NAT64 address with a non-zero u octet) → country in `deny_countries` → country in `allow_countries`
    /// → unknown country → `unknown_country`.
    #[inline]
    pub fn judge(&self, ip: IpAddr, geo: &GeoDb) -> Verdict {
        let (canon, teredo) = match canonicalize(ip, &self.nat64) {
            Canonical::Ip(ip) => (ip, false),
            Canonical::Untraceable(v6) => (IpAddr::V6(v6), true),
        };
        // The country is looked up even when a network rule decides, so the
        // evidence (logs, audit) always says where an address is.
        let country = if teredo { None } else { geo.country(canon) };
        let verdict = |rule, reason| Verdict {
            ip: Some(canon),
            country,
            rule,
            reason,
            operator: Operator::default(),
            foreign_operator: false,
            advisory: false,
        };
        if self.deny_networks.contains(canon) {
            return verdict(Rule::DenyNetworks, Some(Reason::NetworkDenied));
        }
        if self.allow_networks.contains(canon) {
            return verdict(Rule::AllowNetworks, None);
        }
        if teredo {
            return verdict(Rule::Untraceable, Some(Reason::UntraceableAddress));
        }
        match country {
            Some(c) if self.deny_countries.contains(c) => {
                verdict(Rule::DenyCountries, Some(Reason::CountryDenied))
            }
            Some(c) if self.allow_countries.contains(c) => verdict(Rule::AllowCountries, None),
            Some(_) => verdict(Rule::NotInAllowCountries, Some(Reason::CountryNotAllowed)),
            None if self.unknown_allowed => verdict(Rule::UnknownCountry, None),
            None => verdict(Rule::UnknownCountry, Some(Reason::UnknownCountry)),
        }
    }

    /// Judges `ip` for `side`: the country decision of [`Policy::judge`]
    /// first; then, with an operator database, the operator is looked up
    /// and, for an address the country decision allowed by country (not by
    /// `allow_networks`, which still wins), `on_foreign_operator` applies.
    /// An unknown operator country is not foreign. Neither locks nor
    /// allocates.
    #[inline]
    pub fn judge_side(
        &self,
        ip: IpAddr,
        side: Side,
        geo: &GeoDb,
        operators: Option<&OperatorDb>,
    ) -> Verdict {
        let mut v = self.judge(ip, geo);
        let (Some(db), Some(canon)) = (operators, v.ip) else {
            return v;
        };
        if v.rule == Rule::Untraceable {
            return v;
        }
        v.operator = db.operator(canon);
        v.foreign_operator = v
            .operator
            .country
            .is_some_and(|c| !self.operator_countries.contains(c));
        if !v.foreign_operator || v.reason.is_some() || v.rule == Rule::AllowNetworks {
            return v;
        }
        match self.on_foreign_operator.get(side) {
            OperatorAction::Ignore => {}
            action => {
                v.rule = Rule::ForeignOperator;
                v.reason = Some(Reason::ForeignOperator);
                v.advisory = action == OperatorAction::Flag;
            }
        }
        v
    }

    /// What a verdict means for the request under this policy's mode.
    #[inline]
    pub const fn decide(&self, verdict: &Verdict) -> Decision {
        match (verdict.passes(), self.mode) {
            (true, _) => Decision::Allowed,
            (false, _) if verdict.advisory => Decision::Flagged,
            (false, Mode::Enforce) => Decision::Blocked,
            (false, Mode::Monitor) => Decision::Flagged,
        }
    }
}

#[cfg(test)]
mod tests;
