//! The conversation engine (see `ports` for what it needs from outside).

pub mod ports;
