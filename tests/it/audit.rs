//! Audit trail tests.
