//! Unit tests of the quorum core, one file per part: rounds, the write and read coordinators,
//! and the hint, handoff and reaping decisions. Each coordinator file drives its state machine
//! through one `Drive` helper, so an API change touches one place.

mod coordinators;
mod parts;
mod rounds;
