//! The token inventory's decisions (`spec.inventory`): the class of each listed token, the
//! counts a streamed list adds up to, when the next inventory is due, and the status it shows.
//! No I/O here: `controller::token_inventory` lists, revokes and writes.

pub mod classify;
pub mod report;
pub mod schedule;
pub mod tally;

pub use classify::{Class, Judge};
pub use tally::{Tally, TokenExpiry};
