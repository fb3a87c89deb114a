//! Why a check could not run or judge, and the verdicts that are not valid: each carried to
//! `main` as the process's exit code (`CheckError::exit_code`), so only a valid history passes
//! a script.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The exit code of a history judged invalid.
pub const EXIT_INVALID: u8 = 1;
/// The exit code of a history that could not be judged (a budget ran out, or it lacks what
/// the checker needs).
pub const EXIT_UNKNOWN: u8 = 2;
/// The exit code of a history that could not be checked at all.
pub const EXIT_NOT_CHECKED: u8 = 3;

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("the history is invalid")]
    Invalid,
    #[error("the history could not be judged: unknown")]
    Unknown,
    #[error("{0}")]
    Options(&'static str),
    #[error("{what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("decode history {}: {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: check::codec::CodecError,
    },
    #[error("pair the operations of {what}: {source}")]
    Pair {
        what: String,
        #[source]
        source: check::history::HistoryError,
    },
    #[error("no free loopback port between {first} and {end}")]
    NoFreePort { first: u32, end: u32 },
    #[error("{what} member {member}: {source}")]
    Process {
        what: &'static str,
        member: String,
        #[source]
        source: std::io::Error,
    },
    #[error("kill {signal} {pid} failed: {status}")]
    Signal {
        signal: &'static str,
        pid: u32,
        status: String,
    },
    #[error("{when}: member {member} serves no linearizable read within {timeout:?}")]
    NotReady {
        when: &'static str,
        member: String,
        timeout: Duration,
    },
    #[error("{what}: {source}")]
    Client {
        what: &'static str,
        #[source]
        source: client::ClientError,
    },
    #[error("could not open the bank's accounts")]
    BankNotOpened,
    #[error("a task of the run ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl CheckError {
    /// The error of file operation `what` on `path`, for `map_err`.
    pub fn file(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CheckError {
        let path = path.to_owned();
        move |source| CheckError::File { what, path, source }
    }

    /// The process's exit code for this outcome: 1 invalid, 2 unknown, 3 not checked.
    pub fn exit_code(&self) -> u8 {
        match self {
            CheckError::Invalid => EXIT_INVALID,
            CheckError::Unknown => EXIT_UNKNOWN,
            _ => EXIT_NOT_CHECKED,
        }
    }
}

#[cfg(test)]
mod tests {
    use check::{Anomaly, AnomalyKind, Verdict};

    use super::*;
    use crate::verdict_result;

    #[test]
    fn only_a_valid_verdict_exits_zero() {
        assert!(verdict_result(&Verdict::Valid).is_ok());
        let anomaly = Anomaly {
            kind: AnomalyKind::LostWrite,
            key: None,
            ops: vec![1],
            explanation: "planted".to_owned(),
        };
        let invalid = verdict_result(&Verdict::Invalid(vec![anomaly])).unwrap_err();
        assert_eq!(invalid.exit_code(), EXIT_INVALID);
        let unknown = verdict_result(&Verdict::Unknown("budget".to_owned())).unwrap_err();
        assert_eq!(unknown.exit_code(), EXIT_UNKNOWN);
        let unreadable = CheckError::File {
            what: "read history",
            path: PathBuf::from("missing.jsonl"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(unreadable.exit_code(), EXIT_NOT_CHECKED);
        assert!(
            unreadable.to_string().contains("missing.jsonl"),
            "{unreadable}"
        );
    }
}
