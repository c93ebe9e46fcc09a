//! One file per subcommand; each parses its arguments and calls the library.

pub mod bench;
pub mod convert;
pub mod eval;
pub mod export;
pub mod forward;
pub mod infer;
pub mod models;
pub mod test;
pub mod train;
