//! The audit trail (SPEC §6): one JSON Lines record per request, chained by
//! SHA-256 so that a deleted, edited or reordered record is detectable.
