//! Integration tests of the feature engine: point-in-time retrieval against an independent
//! reference implementation, on generated Parquet data.

mod historical;
mod online;
