//! Flows are data: `flows/*.toml`, editable by support staff without a
//! rebuild. This module parses them ([`load`]), checks them ([`check`]: the
//! linter behind `recoverbot flows check`), draws them ([`graph`]) and holds
//! the vocabulary they may use ([`catalog`]). The [`classifier`] is trained
//! from the flows' example phrasings when they load; [`router`] decides where
//! free text goes.

pub mod catalog;
pub mod check;
pub mod classifier;
pub mod eval;
pub mod graph;
pub mod load;
pub mod model;
pub mod router;

pub use check::Diagnostic;
pub use load::{
    BUILTIN_FLOWS, check_text, load_builtin, load_configured, load_dir, load_dir_with,
    parse_flow_file,
};
pub use model::{FlowSet, Target, normalize};
pub use router::{Route, RouteBy};
