//! Consistency levels of quorum-bucket requests: how many replicas of a key's N must answer
//! a read (R) or acknowledge a write (W). Pure arithmetic; the wire form is the driver's.

use std::fmt;

/// How many replicas must answer a request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Level {
    One,
    /// A majority of N.
    Quorum,
    All,
    Count(u32),
}

/// A level that cannot be met by a bucket's N.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    #[error("{what}={count} exceeds the bucket's n={n}")]
    AboveN {
        what: &'static str,
        count: u32,
        n: usize,
    },
    #[error("{what}=0: at least one replica must answer")]
    Zero { what: &'static str },
}

impl Level {
    /// The number of replicas this level requires out of `n`; `what` ("r" or "w") names it in
    /// errors.
    pub fn required(self, n: usize, what: &'static str) -> Result<usize, LevelError> {
        match self {
            Level::One => Ok(1.min(n)),
            Level::Quorum => Ok(n / 2 + 1),
            Level::All => Ok(n),
            Level::Count(0) => Err(LevelError::Zero { what }),
            Level::Count(count) if count as usize > n => Err(LevelError::AboveN { what, count, n }),
            Level::Count(count) => Ok(count as usize),
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::One => f.write_str("one"),
            Level::Quorum => f.write_str("quorum"),
            Level::All => f.write_str("all"),
            Level::Count(count) => write!(f, "{count}"),
        }
    }
}
