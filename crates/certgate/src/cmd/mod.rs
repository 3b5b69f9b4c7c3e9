//! One module per subcommand.

pub mod admin;
pub mod ca;
pub mod check;
pub mod egress;
pub mod generate;
pub mod inspect;
pub mod log;
pub mod quickstart;
pub mod serve;
pub mod trust;
