//! One file per subcommand; each parses its arguments and calls the library.

pub mod eval;
