//! Integration tests of `plinth-filter` through its public API only: table
//! tests of valid and invalid filters and order-by entries for every grammar,
//! and property tests that parsing never panics and that printing
//! round-trips.

mod common;
mod filter_invalid;
mod filter_valid;
mod order_by;
mod properties;
